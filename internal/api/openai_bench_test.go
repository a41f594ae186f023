package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/audit/audittest"
	"github.com/moatproject/moat/internal/gateway"
)

// benchRate is the offered load of BenchmarkGatewayOverhead, per target,
// in requests a second: 2,000, or MOAT_BENCH_RATE to see the overhead
// below saturation.
var benchRate = func() int {
	if n, err := strconv.Atoi(os.Getenv("MOAT_BENCH_RATE")); err == nil && n > 0 {
		return n
	}
	return 2000
}()

// benchPrompt is a 2 KB user message holding an email, a phone number and
// a card number, so every request is classified, tokenised and restored.
var benchPrompt = func() string {
	var b strings.Builder
	b.WriteString("Hello, I am writing about my order. Please reach me at grace.hopper@example.com or on +1 415 555 0132, ")
	b.WriteString("and charge the balance to my card 4111 1111 1111 1111. ")
	for b.Len() < 2048 {
		b.WriteString("The parcel arrived late and the box was damaged, so I would like to know what can be done about it. ")
	}
	return b.String()[:2048]
}()

// discardRecorder keeps no record, so that the load does not grow the heap.
type discardRecorder struct{}

func (discardRecorder) Record(context.Context, gateway.Record) error { return nil }

// benchTarget is one path the load is offered to.
type benchTarget struct {
	Name, URL, Token string
}

// benchResult is what the load measured on one target.
type benchResult struct {
	Latencies, Overheads []time.Duration
	Failed               int64
	FirstErr             string
	LoadCPU              time.Duration // the load process's CPU while it ran
}

// BenchmarkGatewayOverhead offers the same open-loop load (benchRate
// requests a second, sent on schedule whether or not earlier ones have
// answered) to four paths to the same kind of fake OpenAI upstream: the
// upstream directly; a bare reverse proxy in front of it; Moat's
// /v1/chat/completions keeping no call records; and the same recording each
// call in the audit log as `moat serve` does. It reports the latency of
// each and the differences: what the gateway adds. Each of b.N requests is
// sent to all four; run it with -benchtime=20000x for 10 s of load on each.
//
// The load and the fake upstream run in a process of their own, as a client
// and a vendor would, so that Moat's garbage collector and scheduler do not
// slow the client and the upstream (MOAT_BENCH_ONE_PROCESS=1 runs them in
// this process, as this benchmark did before).
//
// Latency is measured from the time a request was due, not from when it was
// sent, so a stalled sender counts against the run (no coordinated
// omission). The targets alternate in rounds, so that other load on the
// machine falls on all alike.
func BenchmarkGatewayOverhead(b *testing.B) {
	oneProcess := os.Getenv("MOAT_BENCH_ONE_PROCESS") == "1"
	var outside *loadProcess
	upstreamURL := ""
	if !oneProcess {
		outside = startLoadProcess(b)
		upstreamURL = outside.upstream
	}
	// The gateway's connector needs pooled connections as the proxy has
	// them: the default keeps two idle per host, and at this rate the rest
	// would be new connections, measuring TCP set-up rather than Moat.
	tweak := func(recorder gateway.Recorder) func(*gateway.Config) {
		return func(cfg *gateway.Config) {
			cfg.HTTPClient = &http.Client{Transport: benchTransport()}
			cfg.Recorder = recorder
			if upstreamURL != "" {
				res := gateway.Resources(cfg.Resources.(staticResources))
				res.Connectors = slices.Clone(res.Connectors)
				res.Connectors[0].BaseURL = upstreamURL + "/v1"
				cfg.Resources = staticResources(res)
			}
		}
	}
	s := newOpenAIStackConfig(b, tweak(discardRecorder{}))
	// The same gateway recording each call as production does: in the
	// tamper-evident audit log, before anything is sent and before the
	// answer is released (fail closed).
	auditLog, _ := audittest.New(b)
	audited := newOpenAIStackConfig(b, tweak(gateway.AuditRecorder{Log: auditLog}))
	s.upstream.forget, audited.upstream.forget = true, true
	if upstreamURL == "" {
		upstreamURL = s.upstream.srv.URL
	}
	upstream, err := url.Parse(upstreamURL)
	if err != nil {
		b.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	proxy.Transport = benchTransport()
	bare := httptest.NewServer(proxy)
	b.Cleanup(bare.Close)

	const path = "/v1/chat/completions"
	targets := []benchTarget{
		{Name: "direct", URL: upstreamURL + path},
		{Name: "proxy", URL: bare.URL + path},
		{Name: "moat", URL: s.URL + path, Token: e2eToken},
		{Name: "audited", URL: audited.URL + path, Token: e2eToken},
	}
	var results []benchResult
	var moatCPU []time.Duration // this process's CPU while each target ran
	b.ResetTimer()
	if oneProcess {
		results, moatCPU = runLoads(targets, b.N, nil)
	} else {
		results, moatCPU = outside.run(b, targets, b.N)
	}
	b.StopTimer()

	for i, r := range results {
		if r.Failed > 0 {
			b.Fatalf("%s: %d of %d requests failed (first: %s)", targets[i].Name, r.Failed, len(r.Latencies), r.FirstErr)
		}
	}
	direct, proxied, moat, withAudit := percentiles(results[0].Latencies), percentiles(results[1].Latencies), percentiles(results[2].Latencies), percentiles(results[3].Latencies)
	own, ownAudited := percentiles(results[2].Overheads), percentiles(results[3].Overheads)
	b.ReportMetric(0, "ns/op") // wall time per request is the schedule's, not a measure
	b.ReportMetric(direct.p50, "direct-p50-µs")
	b.ReportMetric(direct.p99, "direct-p99-µs")
	b.ReportMetric(proxied.p50, "proxy-p50-µs")
	b.ReportMetric(proxied.p99, "proxy-p99-µs")
	b.ReportMetric(moat.p50, "moat-p50-µs")
	b.ReportMetric(moat.p99, "moat-p99-µs")
	b.ReportMetric(withAudit.p50, "audited-p50-µs")
	b.ReportMetric(withAudit.p99, "audited-p99-µs")
	b.ReportMetric(moat.p50-proxied.p50, "overhead-p50-µs")
	b.ReportMetric(moat.p99-proxied.p99, "overhead-p99-µs")
	b.ReportMetric(withAudit.p50-proxied.p50, "audited-overhead-p50-µs")
	b.ReportMetric(withAudit.p99-proxied.p99, "audited-overhead-p99-µs")
	b.ReportMetric(own.p50, "header-overhead-p50-µs")
	b.ReportMetric(own.p99, "header-overhead-p99-µs")
	b.ReportMetric(ownAudited.p50, "audited-header-overhead-p50-µs")
	b.ReportMetric(ownAudited.p99, "audited-header-overhead-p99-µs")
	// CPU per request: of this process (the path under test, and in one
	// process the load and upstream too) and of the load process. The
	// difference between paths is what Moat costs in CPU, which decides
	// the rate two cores can sustain.
	for i, t := range targets {
		b.ReportMetric(perRequestUs(moatCPU[i], len(results[i].Latencies)), t.Name+"-cpu-µs/req")
		if !oneProcess {
			b.ReportMetric(perRequestUs(results[i].LoadCPU, len(results[i].Latencies)), t.Name+"-load-cpu-µs/req")
		}
	}
}

func perRequestUs(cpu time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu) / float64(time.Microsecond) / float64(n)
}

// runLoads warms each target, then offers n requests to each in four
// rounds. mark, if set, is told when a target's round begins and ends
// ("begin 2", "end 2"). It returns each target's results and this
// process's CPU time while each one ran.
func runLoads(targets []benchTarget, n int, mark func(string)) ([]benchResult, []time.Duration) {
	client := &http.Client{Transport: benchTransport(), Timeout: 30 * time.Second}
	loads := make([]*load, len(targets))
	for i, t := range targets {
		body, err := json.Marshal(map[string]any{"model": "chat", "messages": []any{map[string]any{"role": "user", "content": benchPrompt}}})
		if err != nil {
			panic(err)
		}
		loads[i] = &load{client: client, url: t.URL, token: t.Token, body: body}
	}
	// Warm every path (connections, pools, caches) outside the measurement.
	for _, l := range loads {
		l.run(min(n, 200))
		l.reset()
	}
	const rounds = 4
	cpu := make([]time.Duration, len(targets))
	for r := range rounds {
		k := n / rounds
		if r == rounds-1 {
			k = n - k*(rounds-1)
		}
		for i, l := range loads {
			if mark != nil {
				mark(fmt.Sprintf("begin %d", i))
			}
			before := processCPU()
			l.run(k)
			cpu[i] += processCPU() - before
			if mark != nil {
				mark(fmt.Sprintf("end %d", i))
			}
		}
	}
	results := make([]benchResult, len(loads))
	for i, l := range loads {
		results[i] = benchResult{Latencies: l.latencies, Overheads: l.overheads, Failed: l.failed.Load(), LoadCPU: cpu[i]}
		if e, ok := l.firstErr.Load().(string); ok {
			results[i].FirstErr = e
		}
	}
	return results, cpu
}

// loadProcess is this test binary run again as the outside world: the fake
// upstream and the load.
type loadProcess struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	lines    *bufio.Scanner
	upstream string
}

const loadProcessEnv = "MOAT_BENCH_LOAD_PROCESS"

func startLoadProcess(b *testing.B) *loadProcess {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchLoadProcess$", "-test.bench=^$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), loadProcessEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	p := &loadProcess{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
	p.lines.Buffer(nil, 64<<20)
	line := p.next(b)
	url, ok := strings.CutPrefix(line, "upstream ")
	if !ok {
		b.Fatalf("load process: %q, want its upstream's URL", line)
	}
	p.upstream = url
	return p
}

// next is the load process's next line of its own (the test framework's
// lines are skipped).
func (p *loadProcess) next(b *testing.B) string {
	for p.lines.Scan() {
		if line, ok := strings.CutPrefix(p.lines.Text(), "moat-bench: "); ok {
			return line
		}
	}
	b.Fatalf("load process ended: %v", p.lines.Err())
	return ""
}

// run has the load process offer n requests to each target, and measures
// this process's CPU while each one runs.
func (p *loadProcess) run(b *testing.B, targets []benchTarget, n int) ([]benchResult, []time.Duration) {
	order, err := json.Marshal(struct {
		Targets []benchTarget
		N       int
	}{targets, n})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fmt.Fprintf(p.stdin, "%s\n", order); err != nil {
		b.Fatal(err)
	}
	cpu := make([]time.Duration, len(targets))
	began := make([]time.Duration, len(targets))
	for {
		line := p.next(b)
		var i int
		switch {
		case strings.HasPrefix(line, "begin "):
			fmt.Sscanf(line, "begin %d", &i)
			began[i] = processCPU()
		case strings.HasPrefix(line, "end "):
			fmt.Sscanf(line, "end %d", &i)
			cpu[i] += processCPU() - began[i]
		case strings.HasPrefix(line, "results "):
			var results []benchResult
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "results ")), &results); err != nil {
				b.Fatal(err)
			}
			return results, cpu
		default:
			b.Fatalf("load process: %q", line)
		}
	}
}

// TestBenchLoadProcess is BenchmarkGatewayOverhead's load process, run only
// by it: a fake upstream and the load, taking its orders on stdin.
func TestBenchLoadProcess(t *testing.T) {
	if os.Getenv(loadProcessEnv) != "1" {
		t.Skip("run by BenchmarkGatewayOverhead")
	}
	up := newFakeOpenAI(t)
	up.forget = true
	say := func(line string) { fmt.Printf("moat-bench: %s\n", line) }
	say("upstream " + up.srv.URL)
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return
	}
	var order struct {
		Targets []benchTarget
		N       int
	}
	if err := json.Unmarshal(in.Bytes(), &order); err != nil {
		t.Fatal(err)
	}
	results, _ := runLoads(order.Targets, order.N, say)
	out, err := json.Marshal(results)
	if err != nil {
		t.Fatal(err)
	}
	say("results " + string(out))
}

func benchTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2048
	t.MaxIdleConnsPerHost = 2048
	return t
}

// load sends the same request on a fixed schedule and keeps each latency.
type load struct {
	client     *http.Client
	url, token string
	body       []byte
	latencies  []time.Duration
	overheads  []time.Duration // the gateway's own x-moat-overhead-us
	mu         sync.Mutex
	failed     atomic.Int64
	firstErr   atomic.Value
}

func (l *load) reset() {
	l.latencies, l.overheads = nil, nil
	l.failed.Store(0)
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// run sends n requests benchRate a second, each in its own goroutine at
// its due time, and waits for all of them.
func (l *load) run(n int) {
	interval := time.Second / time.Duration(benchRate)
	lat := make([]time.Duration, n)
	over := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], over[i] = l.send(due)
		}()
	}
	wg.Wait()
	l.mu.Lock()
	l.latencies = append(l.latencies, lat...)
	l.overheads = append(l.overheads, over...)
	l.mu.Unlock()
}

func (l *load) send(due time.Time) (latency, overhead time.Duration) {
	req, err := http.NewRequest(http.MethodPost, l.url, bytes.NewReader(l.body))
	if err != nil {
		l.fail(err)
		return 0, 0
	}
	req.Header.Set("Content-Type", "application/json")
	if l.token != "" {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	res, err := l.client.Do(req)
	if err != nil {
		l.fail(err)
		return 0, 0
	}
	answer, err := io.ReadAll(res.Body)
	res.Body.Close()
	latency = time.Since(due)
	if err != nil || res.StatusCode != http.StatusOK {
		l.fail(fmt.Errorf("status %d, %v: %.300s", res.StatusCode, err, answer))
		return latency, 0
	}
	if us, err := strconv.ParseInt(res.Header.Get(headerOverhead), 10, 64); err == nil {
		overhead = time.Duration(us) * time.Microsecond
	}
	return latency, overhead
}

func (l *load) fail(err error) {
	l.failed.Add(1)
	l.firstErr.CompareAndSwap(nil, err.Error())
}

type latencySummary struct{ p50, p99 float64 } // microseconds

func percentiles(ds []time.Duration) latencySummary {
	if len(ds) == 0 {
		return latencySummary{}
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	at := func(q float64) float64 {
		i := int(q * float64(len(sorted)-1))
		return float64(sorted[i]) / float64(time.Microsecond)
	}
	return latencySummary{p50: at(0.50), p99: at(0.99)}
}

func BenchmarkDecodeChatRequest(b *testing.B) {
	body, err := json.Marshal(map[string]any{"model": "chat", "messages": []any{map[string]any{"role": "user", "content": benchPrompt}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, e := decodeChatRequest(body); e != nil {
			b.Fatal(e)
		}
	}
}
