package workflow

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Edge is a dependency between two steps. Branch is true when it comes from
// a Brancher's targets: it is taken only when the step chooses it at run
// time.
type Edge struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Branch bool   `json:"branch,omitempty"`
}

// graph is the step DAG by index.
type graph struct {
	n     int
	ids   []string
	preds [][]int
	succs [][]int
	edges map[[2]int]*Edge
	order [][2]int // edges in the order they were added
}

func newGraph(ids []string) *graph {
	return &graph{n: len(ids), ids: ids, preds: make([][]int, len(ids)), succs: make([][]int, len(ids)), edges: map[[2]int]*Edge{}}
}

// add adds from→to. When the same pair comes both from a branch and
// unconditionally, the branch wins: the Brancher decides whether it runs.
func (g *graph) add(from, to int, branch bool) {
	key := [2]int{from, to}
	if e, ok := g.edges[key]; ok {
		e.Branch = e.Branch || branch
		return
	}
	g.edges[key] = &Edge{From: g.ids[from], To: g.ids[to], Branch: branch}
	g.order = append(g.order, key)
	g.preds[to] = append(g.preds[to], from)
	g.succs[from] = append(g.succs[from], to)
}

// buildGraph adds the edges of def's steps. ids holds each step's id (a
// duplicate id resolves to its first step); targets holds each Brancher's
// targets with the pointer that names them.
func buildGraph(steps []Step, byID map[string]int, targets [][]target, c *problems) *graph {
	ids := make([]string, len(steps))
	for i, s := range steps {
		ids[i] = s.ID
	}
	g := newGraph(ids)
	resolve := func(ref, ptr, what string, self int) (int, bool) {
		j, ok := byID[ref]
		switch {
		case !ok:
			msg := fmt.Sprintf("unknown step %q in %s", ref, what)
			if s := closest(ref, ids); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			c.add(ptr, "%s", msg)
			return 0, false
		case j == self:
			c.add(ptr, "step %q cannot name itself in %s", ref, what)
			return 0, false
		}
		return j, true
	}
	for i, s := range steps {
		for k, ref := range s.Needs {
			if j, ok := resolve(ref, index(index("/steps", i)+"/needs", k), "needs", i); ok {
				g.add(j, i, false)
			}
		}
		for k, ref := range s.Next {
			if j, ok := resolve(ref, index(index("/steps", i)+"/next", k), "next", i); ok {
				g.add(i, j, false)
			}
		}
		for _, t := range targets[i] {
			if j, ok := resolve(t.id, t.ptr, "its branch targets", i); ok {
				g.add(i, j, true)
			}
		}
	}
	// A step that says nothing of its predecessors follows the previous one.
	for i := 1; i < len(steps); i++ {
		if steps[i].Needs == nil && len(g.preds[i]) == 0 {
			g.add(i-1, i, false)
		}
	}
	return g
}

type target struct {
	id  string
	ptr string
}

// check reports cycles and steps no root reaches.
func (g *graph) check(c *problems) {
	inCycle := make([]bool, g.n)
	for _, scc := range g.sccs() {
		if len(scc) < 2 {
			continue
		}
		sort.Ints(scc)
		for _, v := range scc {
			inCycle[v] = true
		}
		path := g.cycleThrough(scc)
		names := make([]string, len(path))
		for i, v := range path {
			names[i] = g.ids[v]
		}
		c.add(index("/steps", scc[0]), "steps form a cycle: %s; a workflow must be acyclic (check needs, next and branch targets; a step without needs follows the one before it)", strings.Join(names, " → "))
	}
	seen := make([]bool, g.n)
	var queue []int
	for v := range g.n {
		if len(g.preds[v]) == 0 {
			seen[v] = true
			queue = append(queue, v)
		}
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.succs[v] {
			if !seen[w] {
				seen[w] = true
				queue = append(queue, w)
			}
		}
	}
	for v := range g.n {
		if !seen[v] && !inCycle[v] {
			c.add(index("/steps", v), "step %q is unreachable: no path leads to it from a first step (one without needs)", g.ids[v])
		}
	}
}

// sccs returns the strongly connected components (Tarjan, iterative).
func (g *graph) sccs() [][]int {
	idx := make([]int, g.n)
	low := make([]int, g.n)
	on := make([]bool, g.n)
	for i := range idx {
		idx[i] = -1
	}
	var out [][]int
	var st []int
	counter := 0
	type frame struct{ v, i int }
	for root := range g.n {
		if idx[root] >= 0 {
			continue
		}
		call := []frame{{root, 0}}
		idx[root], low[root] = counter, counter
		counter++
		st = append(st, root)
		on[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			if f.i < len(g.succs[f.v]) {
				w := g.succs[f.v][f.i]
				f.i++
				if idx[w] < 0 {
					idx[w], low[w] = counter, counter
					counter++
					st = append(st, w)
					on[w] = true
					call = append(call, frame{w, 0})
				} else if on[w] {
					low[f.v] = min(low[f.v], idx[w])
				}
				continue
			}
			v := f.v
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				low[p] = min(low[p], low[v])
			}
			if low[v] == idx[v] {
				var comp []int
				for {
					w := st[len(st)-1]
					st = st[:len(st)-1]
					on[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				out = append(out, comp)
			}
		}
	}
	return out
}

// cycleThrough returns a shortest cycle from the first (sorted) member of
// scc back to itself, both ends included.
func (g *graph) cycleThrough(scc []int) []int {
	in := map[int]bool{}
	for _, v := range scc {
		in[v] = true
	}
	start := scc[0]
	parent := map[int]int{start: -1}
	queue := []int{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.succs[v] {
			if w == start {
				var path []int
				for u := v; u != -1; u = parent[u] {
					path = append(path, u)
				}
				for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
					path[i], path[j] = path[j], path[i]
				}
				return append(path, start)
			}
			if _, ok := parent[w]; !ok && in[w] {
				parent[w] = v
				queue = append(queue, w)
			}
		}
	}
	return append(scc, start)
}

// ancestors returns, for step v, the set of steps with a path to it.
func (g *graph) ancestors(v int) map[string]bool {
	out := map[string]bool{}
	seen := make([]bool, g.n)
	queue := []int{v}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, p := range g.preds[u] {
			if !seen[p] {
				seen[p] = true
				out[g.ids[p]] = true
				queue = append(queue, p)
			}
		}
	}
	return out
}

// findString returns the pointer of the first string equal to s within v
// (keys in sorted order), or "" when there is none.
func findString(v any, s, ptr string) (string, bool) {
	switch x := v.(type) {
	case string:
		if x == s {
			return ptr, true
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if p, ok := findString(x[k], s, child(ptr, k)); ok {
				return p, true
			}
		}
	case []any:
		for i, e := range x {
			if p, ok := findString(e, s, index(ptr, i)); ok {
				return p, true
			}
		}
	}
	return "", false
}
