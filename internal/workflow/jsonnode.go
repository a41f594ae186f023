package workflow

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// lineMap turns byte offsets into 1-based line and column (in characters,
// as YAML counts them).
type lineMap struct {
	src    []byte
	starts []int
}

func newLineMap(src []byte) lineMap {
	starts := []int{0}
	for i, b := range src {
		// Like YAML, a lone \r ends a line too.
		if b == '\n' || b == '\r' && (i+1 == len(src) || src[i+1] != '\n') {
			starts = append(starts, i+1)
		}
	}
	return lineMap{src: src, starts: starts}
}

func (lm lineMap) lineCol(off int) (int, int) {
	off = max(0, min(off, len(lm.src)))
	i := sort.Search(len(lm.starts), func(i int) bool { return lm.starts[i] > off }) - 1
	i = max(i, 0)
	for off > lm.starts[i] && off < len(lm.src) && !utf8.RuneStart(lm.src[off]) {
		off-- // within a character: point at its start
	}
	if off > lm.starts[i] && off < len(lm.src) && lm.src[off] == '\n' && lm.src[off-1] == '\r' {
		off-- // the end of a \r\n line is its \r
	}
	return i + 1, utf8.RuneCount(lm.src[lm.starts[i]:off]) + 1
}

// readJSONNode builds a YAML node tree from valid JSON, with positions.
func readJSONNode(src []byte) *yaml.Node {
	r := &jsonNodeReader{dec: json.NewDecoder(bytes.NewReader(src)), src: src, lm: newLineMap(src)}
	r.dec.UseNumber()
	n, err := r.node()
	if err != nil {
		return nil // unreachable for valid JSON
	}
	return &yaml.Node{Kind: yaml.DocumentNode, Line: n.Line, Column: n.Column, Content: []*yaml.Node{n}}
}

type jsonNodeReader struct {
	dec *json.Decoder
	src []byte
	lm  lineMap
}

func (r *jsonNodeReader) start() (int, int) {
	off := int(r.dec.InputOffset())
	for off < len(r.src) {
		switch r.src[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return r.lm.lineCol(off)
}

func (r *jsonNodeReader) node() (*yaml.Node, error) {
	line, col := r.start()
	tok, err := r.dec.Token()
	if err != nil {
		return nil, err
	}
	n := &yaml.Node{Line: line, Column: col, Kind: yaml.ScalarNode}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
			for r.dec.More() {
				kl, kc := r.start()
				kt, err := r.dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				v, err := r.node()
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, Line: kl, Column: kc}, v)
			}
		case '[':
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
			for r.dec.More() {
				v, err := r.node()
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
		}
		if _, err := r.dec.Token(); err != nil { // closing delimiter
			return nil, err
		}
	case string:
		n.Tag, n.Value = "!!str", t
	case json.Number:
		n.Value = string(t)
		n.Tag = "!!int"
		if strings.ContainsAny(n.Value, ".eE") {
			n.Tag = "!!float"
		}
	case bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(t)
	case nil:
		n.Tag, n.Value = "!!null", "null"
	}
	return n, nil
}
