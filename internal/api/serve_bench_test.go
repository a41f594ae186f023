package api

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkServeOverhead measures what DESIGN.md's end-to-end target names:
// a load generator, Moat and a fake upstream as separate processes on the
// same cores. It starts the fake upstream and a bare httputil.ReverseProxy
// in front of it as processes of their own (this test binary, run again as
// a helper), and `moat serve` itself (built from this tree, or MOAT_BIN to
// measure another build) with an openai connector pointed at the upstream,
// the default policy and its audit trail. The load (benchRate requests a
// second, open loop, the 2 KB prompt with PII; see BenchmarkGatewayOverhead)
// goes to the upstream directly, through the proxy and through Moat, in
// alternating rounds:
//
//	go test -run '^$' -bench BenchmarkServeOverhead -benchtime 20000x ./internal/api/
//
// The target is Moat's added latency at most 1.5 times the proxy's:
// ratio-p50 and ratio-p99 are (moat − direct) / (proxy − direct). For each
// path, hop-cpu is the CPU time per request of the process it adds (for
// direct, the upstream) and hop-wait the time that process's threads waited
// for a CPU while runnable. MOAT_BENCH_SERVE_GOMAXPROCS sets GOMAXPROCS for
// moat serve alone; MOAT_BENCH_ONLY=<path> offers all the load to one path,
// to profile it.
// BenchmarkGatewayOverhead, with everything in one process, isolates the
// gateway's own cost better; this one is the deployment as it runs.
func BenchmarkServeOverhead(b *testing.B) {
	upstream := startBenchHelper(b, "upstream", "")
	proxy := startBenchHelper(b, "proxy", upstream.url)
	moat := startMoatServe(b, upstream.url)

	body := benchChatBody(b)
	client := &http.Client{Transport: benchTransport(), Timeout: 30 * time.Second}
	const path = "/v1/chat/completions"
	loads := []*load{
		{name: "direct", client: client, url: upstream.url + path, body: body},
		{name: "proxy", client: client, url: proxy.url + path, body: body},
		{name: "moat", client: client, url: moat.url + path, token: moat.token, body: body},
	}
	// The process each path adds (for the direct path, the upstream): its
	// CPU time per request is what that hop costs.
	hops := map[string]*exec.Cmd{"direct": upstream.cmd, "proxy": proxy.cmd, "moat": moat.cmd}
	loads = onlyPath(b, loads)
	checkAndWarm(b, loads)
	hopCPU, hopWait := map[string]time.Duration{}, map[string]time.Duration{}
	runRounds(b, loads, func(l *load, n int) {
		before, waitedBefore := processCPUOf(b, hops[l.name]), threadWaits(hops[l.name].Process.Pid)
		l.run(n)
		hopCPU[l.name] += processCPUOf(b, hops[l.name]) - before
		hopWait[l.name] += waitedSince(threadWaits(hops[l.name].Process.Pid), waitedBefore)
	})

	failOnErrors(b, loads)
	direct, proxied, served := percentiles(loads[0].latencies), percentiles(loads[1].latencies), percentiles(loads[2].latencies)
	own := percentiles(loads[2].overheads)
	b.ReportMetric(0, "ns/op")
	for _, p := range []struct {
		name string
		s    latencySummary
	}{{"direct", direct}, {"proxy", proxied}, {"moat", served}} {
		b.ReportMetric(p.s.p50, p.name+"-p50-µs")
		b.ReportMetric(p.s.p99, p.name+"-p99-µs")
	}
	b.ReportMetric(proxied.p50-direct.p50, "proxy-minus-direct-p50-µs")
	b.ReportMetric(served.p50-direct.p50, "moat-minus-direct-p50-µs")
	b.ReportMetric((served.p50-direct.p50)/(proxied.p50-direct.p50), "ratio-p50")
	b.ReportMetric((served.p99-direct.p99)/(proxied.p99-direct.p99), "ratio-p99")
	b.ReportMetric(own.p50, "header-overhead-p50-µs")
	b.ReportMetric(own.p99, "header-overhead-p99-µs")
	reportLateness(b, loads)
	for _, l := range loads {
		b.ReportMetric(float64(hopCPU[l.name])/float64(time.Microsecond)/float64(len(l.latencies)), l.name+"-hop-cpu-µs/req")
		b.ReportMetric(float64(hopWait[l.name])/float64(time.Microsecond)/float64(len(l.latencies)), l.name+"-hop-wait-µs/req")
		// The load's own CPU, from this process, which shares the cores.
		b.ReportMetric(float64(l.cpu)/float64(time.Microsecond)/float64(len(l.latencies)), l.name+"-load-cpu-µs/req")
	}
}

// benchProcess is a server this benchmark started.
type benchProcess struct {
	cmd   *exec.Cmd
	url   string
	token string
}

// benchHelperEnv names the part a run of this test binary plays for
// BenchmarkServeOverhead: upstream or proxy.
const benchHelperEnv = "MOAT_BENCH_HELPER"

// TestServeOverheadHelper is BenchmarkServeOverhead's upstream or proxy
// when the test binary is started as one; otherwise it does nothing.
func TestServeOverheadHelper(t *testing.T) {
	role := os.Getenv(benchHelperEnv)
	if role == "" {
		t.Skip("runs only as BenchmarkServeOverhead's helper process")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = http.HandlerFunc(benchUpstream)
	if role == "proxy" {
		target, err := url.Parse(os.Getenv("MOAT_BENCH_UPSTREAM"))
		if err != nil {
			t.Fatal(err)
		}
		h = benchProxy(target)
	}
	fmt.Println("listening on", ln.Addr())
	t.Fatal(http.Serve(ln, h)) // until the benchmark kills it
}

func startBenchHelper(b *testing.B, role, upstream string) benchProcess {
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeOverheadHelper$")
	cmd.Env = append(os.Environ(), benchHelperEnv+"="+role, "MOAT_BENCH_UPSTREAM="+upstream)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stopWith(b, cmd, os.Kill)
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if addr, ok := strings.CutPrefix(lines.Text(), "listening on "); ok {
			go func() { // the pipe must not fill up
				for lines.Scan() {
				}
			}()
			return benchProcess{cmd: cmd, url: "http://" + addr}
		}
	}
	b.Fatalf("the %s helper exited without listening", role)
	return benchProcess{}
}

// startMoatServe runs `moat serve` on a fresh data directory with one
// openai connector at upstream, the alias "chat" for it, and the default
// policy, and returns it with its bootstrap token.
func startMoatServe(b *testing.B, upstream string) benchProcess {
	dir := b.TempDir()
	bin := os.Getenv("MOAT_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "moat")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/moatproject/moat/cmd/moat").CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
	}
	resources := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(resources, fmt.Appendf(nil, `apiVersion: moat/v1
kind: Vendor
name: bench
location: on-premises
retentionDays: 0
trainsOnCustomerData: false
---
apiVersion: moat/v1
kind: Connector
name: bench
type: openai
vendor: bench
credential: {env: MOAT_BENCH_KEY}
baseURL: %s/v1
models: [bench-model]
---
apiVersion: moat/v1
kind: Model
name: chat
chain:
  - {connector: bench, model: bench-model}
`, upstream), 0o600); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(dir, "data")
	log, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(bin, "serve", "--data-dir", data, "--addr", addr, "--apply", resources, "--allow-private-egress")
	cmd.Env = append(os.Environ(), "MOAT_BENCH_KEY=not-checked-by-the-fake")
	// MOAT_BENCH_SERVE_GOMAXPROCS sets GOMAXPROCS for moat serve alone, not
	// for the load, the upstream or the proxy.
	if procs := os.Getenv("MOAT_BENCH_SERVE_GOMAXPROCS"); procs != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+procs)
	}
	cmd.Stdout, cmd.Stderr = log, log
	exited := stopWith(b, cmd, os.Interrupt)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, err := http.Get("http://" + addr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
		default:
			if time.Now().Before(deadline) {
				continue
			}
		}
		out, _ := os.ReadFile(log.Name())
		b.Fatalf("moat serve did not become ready:\n%s", out)
	}
	token, err := os.ReadFile(filepath.Join(data, "bootstrap.token"))
	if err != nil {
		b.Fatal(err)
	}
	return benchProcess{cmd: cmd, url: "http://" + addr, token: strings.TrimSpace(string(token))}
}

// stopWith starts cmd and stops it with signal when the benchmark ends;
// the channel it returns is closed when cmd has exited.
func stopWith(b *testing.B, cmd *exec.Cmd, signal os.Signal) <-chan struct{} {
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(signal)
		<-exited
	})
	return exited
}

// processCPUOf is the user and system CPU time cmd's process has used,
// from /proc (in clock ticks of 10 ms, so over seconds of load).
func processCPUOf(b *testing.B, cmd *exec.Cmd) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it; utime and stime are the 14th and 15th.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		b.Fatalf("/proc/%d/stat: %q", cmd.Process.Pid, stat)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// threadWaits is, for each thread of process pid, how long it has waited
// runnable for a CPU (the second field of /proc/PID/task/TID/schedstat, in
// nanoseconds). On a machine whose cores the load, the upstream and Moat
// share, a call's time in Moat is its CPU time plus this wait. It is empty
// where the kernel keeps no schedstat.
func threadWaits(pid int) map[string]time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, _ := os.ReadDir(dir)
	waits := make(map[string]time.Duration, len(tasks))
	for _, t := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread has exited
		}
		if fields := strings.Fields(string(stat)); len(fields) >= 2 {
			if ns, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				waits[t.Name()] = time.Duration(ns)
			}
		}
	}
	return waits
}

// waitedSince is how much the threads in now waited since before; a thread
// that exited in between is missed, one that started counts from zero.
func waitedSince(now, before map[string]time.Duration) time.Duration {
	var sum time.Duration
	for tid, w := range now {
		sum += w - before[tid]
	}
	return sum
}

func TestThreadWaits(t *testing.T) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d/schedstat", os.Getpid(), os.Getpid())); err != nil {
		t.Skip("the kernel keeps no schedstat here:", err)
	}
	waits := threadWaits(os.Getpid())
	if _, ok := waits[strconv.Itoa(os.Getpid())]; !ok {
		t.Fatalf("no wait read for the main thread %d: %v", os.Getpid(), waits)
	}
	before := map[string]time.Duration{"1": 5, "2": 7, "gone": 100}
	now := map[string]time.Duration{"1": 8, "2": 7, "new": 4}
	if got := waitedSince(now, before); got != 3+0+4 {
		t.Errorf("waitedSince = %v, want 7ns: thread 1's 3, thread 2's 0, the new thread's 4, the exited one left out", got)
	}
}
