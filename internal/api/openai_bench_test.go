package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/audit/audittest"
	"github.com/moatproject/moat/internal/config"
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

// BenchmarkGatewayOverhead offers the same open-loop load (benchRate
// requests a second, sent on schedule whether or not earlier ones have
// answered) to four paths to the same kind of fake OpenAI upstream: the
// upstream directly; a bare reverse proxy in front of it; Moat's
// /v1/chat/completions keeping no call records; and the same recording each
// call in the audit log as `moat serve` does. It reports the latency of
// each and the differences: what the gateway adds. Each of b.N requests is
// sent to all four; run it with -benchtime=20000x for 10 s of load on each.
//
// Latency is measured from the time a request was due, not from when it was
// sent, so a stalled sender counts against the run (no coordinated
// omission); the pacer (see pacing_linux_test.go) keeps the schedule to
// tens of microseconds, and sent-late-* reports how well. The targets
// alternate in rounds, so that other load on the machine falls on all
// alike. Everything runs in this process: a load process of its own, tried,
// put two Go schedulers on the two cores and made every path slower.
func BenchmarkGatewayOverhead(b *testing.B) {
	// The garbage collector's target as `moat serve` sets it.
	b.Cleanup(config.TuneGC())
	lean := httptest.NewServer(http.HandlerFunc(benchUpstream))
	b.Cleanup(lean.Close)
	upstreamURL := lean.URL
	// The gateway's connector needs pooled connections as the proxy has
	// them: the default keeps two idle per host, and at this rate the rest
	// would be new connections, measuring TCP set-up rather than Moat.
	s := newOpenAIStackConfig(b, func(cfg *gateway.Config) {
		cfg.HTTPClient = &http.Client{Transport: benchTransport()}
		cfg.Recorder = discardRecorder{}
		cfg.Resources = withBaseURL(b, cfg.Resources, upstreamURL+"/v1")
	})
	// The same gateway recording each call as production does: in the
	// tamper-evident audit log, before anything is sent and before the
	// answer is released (fail closed).
	auditLog, _ := audittest.New(b)
	audited := newOpenAIStackConfig(b, func(cfg *gateway.Config) {
		cfg.HTTPClient = &http.Client{Transport: benchTransport()}
		cfg.Recorder = gateway.AuditRecorder{Log: auditLog}
		cfg.Resources = withBaseURL(b, cfg.Resources, upstreamURL+"/v1")
	})
	upstream, err := url.Parse(upstreamURL)
	if err != nil {
		b.Fatal(err)
	}
	bare := httptest.NewServer(benchProxy(upstream))
	b.Cleanup(bare.Close)

	body := benchChatBody(b)
	client := &http.Client{Transport: benchTransport(), Timeout: 30 * time.Second}
	const path = "/v1/chat/completions"
	loads := []*load{
		{name: "direct", client: client, url: upstreamURL + path, body: body},
		{name: "proxy", client: client, url: bare.URL + path, body: body},
		{name: "moat", client: client, url: s.URL + path, token: e2eToken, body: body},
		{name: "audited", client: client, url: audited.URL + path, token: e2eToken, body: body},
	}
	loads = onlyPath(b, loads)
	checkAndWarm(b, loads)
	runRounds(b, loads, func(l *load, n int) { l.run(n) })

	failOnErrors(b, loads)
	direct, proxied, moat, withAudit := percentiles(loads[0].latencies), percentiles(loads[1].latencies), percentiles(loads[2].latencies), percentiles(loads[3].latencies)
	own, ownAudited := percentiles(loads[2].overheads), percentiles(loads[3].overheads)
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
	// Side by side with calling the upstream directly: what one more hop
	// costs (the bare proxy), and what Moat costs with it.
	b.ReportMetric(proxied.p50-direct.p50, "proxy-minus-direct-p50-µs")
	b.ReportMetric(moat.p50-direct.p50, "moat-minus-direct-p50-µs")
	b.ReportMetric(withAudit.p50-direct.p50, "audited-minus-direct-p50-µs")
	b.ReportMetric(own.p50, "header-overhead-p50-µs")
	b.ReportMetric(own.p99, "header-overhead-p99-µs")
	b.ReportMetric(ownAudited.p50, "audited-header-overhead-p50-µs")
	b.ReportMetric(ownAudited.p99, "audited-header-overhead-p99-µs")
	reportLateness(b, loads)
	// CPU of the whole process (client, fake upstream and the path under
	// test) per request: the difference is what Moat costs in CPU, which
	// decides the rate two cores can sustain.
	for _, l := range loads {
		b.ReportMetric(float64(l.cpu)/float64(time.Microsecond)/float64(len(l.latencies)), l.name+"-cpu-µs/req")
	}
}

// withBaseURL points the stack's one connector at the benchmark's upstream.
func withBaseURL(b *testing.B, rs gateway.ResourceStore, baseURL string) gateway.ResourceStore {
	res := gateway.Resources(rs.(staticResources))
	if len(res.Connectors) != 1 {
		b.Fatalf("the stack has %d connectors, want 1", len(res.Connectors))
	}
	res.Connectors = slices.Clone(res.Connectors)
	res.Connectors[0].BaseURL = baseURL
	return staticResources(res)
}

// The upstream, the client and the proxy share the process with what is
// measured, so their garbage sets off collections that fall on every
// path: they read and write through pooled buffers, and the upstream does
// not decode the request. (With fakeOpenAI's encoding/json round trip and
// a fresh buffer per read they allocated about half of the process's
// bytes, and the process collected about twelve times a second.)
var benchBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// benchUpstream answers a chat completion as fakeOpenAI does, echoing the
// last message's content and the model, by copying their JSON strings as
// they came.
func benchUpstream(w http.ResponseWriter, r *http.Request) {
	in := benchBuffers.Get().(*bytes.Buffer)
	out := benchBuffers.Get().(*bytes.Buffer)
	defer func() {
		in.Reset()
		out.Reset()
		benchBuffers.Put(in)
		benchBuffers.Put(out)
	}()
	if _, err := in.ReadFrom(r.Body); err != nil {
		http.Error(w, `{"error":{"message":"read failed","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	model, okModel := jsonStringAfter(in.Bytes(), `"model":`, false)
	content, okContent := jsonStringAfter(in.Bytes(), `"content":`, true)
	if !okModel || !okContent {
		http.Error(w, `{"error":{"message":"no model or content","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	out.WriteString(`{"id":"up-1","object":"chat.completion","created":1,"model":`)
	out.Write(model)
	out.WriteString(`,"choices":[{"index":0,"message":{"role":"assistant","content":`)
	out.Write(content)
	out.WriteString(`},"finish_reason":"stop"}],"usage":{"prompt_tokens":40,"completion_tokens":10,"total_tokens":50}}`)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	_, _ = w.Write(out.Bytes())
}

// jsonStringAfter returns the JSON string (quotes included) that follows
// the first, or the last, occurrence of key in compact JSON. A key cannot
// occur inside a string, where its quotes would be escaped.
func jsonStringAfter(body []byte, key string, last bool) ([]byte, bool) {
	i := bytes.Index(body, []byte(key))
	if last {
		i = bytes.LastIndex(body, []byte(key))
	}
	if i < 0 {
		return nil, false
	}
	rest := body[i+len(key):]
	if len(rest) == 0 || rest[0] != '"' {
		return nil, false
	}
	for j := 1; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '"':
			return rest[:j+1], true
		}
	}
	return nil, false
}

// benchProxy is the bare reverse proxy both gateway benchmarks measure
// Moat against.
func benchProxy(target *url.URL) *httputil.ReverseProxy {
	p := httputil.NewSingleHostReverseProxy(target)
	p.Transport = benchTransport()
	p.BufferPool = proxyBuffers{}
	return p
}

// proxyBuffers gives the reverse proxy pooled copy buffers, as a proxy in
// production would have; without them it takes 32 KB per request.
type proxyBuffers struct{}

var proxyBufferPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (proxyBuffers) Get() []byte  { return proxyBufferPool.Get().(*[32 << 10]byte)[:] }
func (proxyBuffers) Put(b []byte) { proxyBufferPool.Put((*[32 << 10]byte)(b)) }

func benchTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2048
	t.MaxIdleConnsPerHost = 2048
	return t
}

// load sends the same request on a fixed schedule and keeps each latency.
type load struct {
	name       string
	client     *http.Client
	url, token string
	body       []byte
	latencies  []time.Duration
	overheads  []time.Duration // the gateway's own x-moat-overhead-us
	late       []time.Duration // how late each request was sent
	cpu        time.Duration   // the process's CPU time while this load ran
	mu         sync.Mutex
	failed     atomic.Int64
	firstErr   atomic.Value
}

func (l *load) reset() {
	l.latencies, l.overheads, l.late, l.cpu = nil, nil, nil, 0
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
	late := make([]time.Duration, n)
	var wg sync.WaitGroup
	pace, err := newPacer()
	if err != nil {
		panic(err)
	}
	defer pace.Close()
	cpu := processCPU()
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if err := pace.sleepUntil(due); err != nil {
			panic(err)
		}
		late[i] = time.Since(due)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], over[i] = l.send(due)
		}()
	}
	wg.Wait()
	l.cpu += processCPU() - cpu
	l.mu.Lock()
	l.latencies = append(l.latencies, lat...)
	l.overheads = append(l.overheads, over...)
	l.late = append(l.late, late...)
	l.mu.Unlock()
}

// post sends the request once.
func (l *load) post() (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, l.url, bytes.NewReader(l.body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if l.token != "" {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	return l.client.Do(req)
}

func (l *load) send(due time.Time) (latency, overhead time.Duration) {
	res, err := l.post()
	if err != nil {
		l.fail(err)
		return 0, 0
	}
	answer := benchBuffers.Get().(*bytes.Buffer)
	defer func() {
		answer.Reset()
		benchBuffers.Put(answer)
	}()
	_, err = answer.ReadFrom(res.Body)
	res.Body.Close()
	latency = time.Since(due)
	if err != nil || res.StatusCode != http.StatusOK {
		l.fail(fmt.Errorf("status %d, %v: %.300s", res.StatusCode, err, answer.Bytes()))
		return latency, 0
	}
	if us, err := strconv.ParseInt(res.Header.Get(headerOverhead), 10, 64); err == nil {
		overhead = time.Duration(us) * time.Microsecond
	}
	return latency, overhead
}

// answer sends the request once and returns the answer's body.
func (l *load) answer(b *testing.B) string {
	res, err := l.post()
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	var answer bytes.Buffer
	if _, err := answer.ReadFrom(res.Body); err != nil || res.StatusCode != http.StatusOK {
		b.Fatalf("%s: status %d, %v: %.300s", l.name, res.StatusCode, err, answer.Bytes())
	}
	return answer.String()
}

// benchChatBody is the chat completion request both gateway benchmarks send.
func benchChatBody(b *testing.B) []byte {
	body, err := json.Marshal(map[string]any{"model": "chat", "messages": []any{map[string]any{"role": "user", "content": benchPrompt}}})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// checkAndWarm checks that every path answers with the prompt, its personal
// data in clear (Moat restores what it tokenised), and then warms each
// (connections, pools, caches) outside the measurement.
func checkAndWarm(b *testing.B, loads []*load) {
	for _, l := range loads {
		if answer := l.answer(b); !strings.Contains(answer, "grace.hopper@example.com") || !strings.Contains(answer, "4111 1111 1111 1111") {
			b.Fatalf("%s answered %.300s", l.name, answer)
		}
	}
	for _, l := range loads {
		l.run(min(b.N, 200))
		l.reset()
	}
}

// runRounds sends b.N requests to each load in four rounds, the loads
// taking turns within each, so that other work on the machine falls on all
// alike; run sends n requests of l.
func runRounds(b *testing.B, loads []*load, run func(l *load, n int)) {
	const rounds = 4
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		if r == rounds-1 {
			n = b.N - n*(rounds-1)
		}
		for _, l := range loads {
			run(l, n)
		}
	}
	b.StopTimer()
}

// onlyPath, when MOAT_BENCH_ONLY names one of loads' paths, offers all the
// load to that path, to profile it alone: every entry of the list it
// returns is that path, and its figures show under every path's name.
func onlyPath(b *testing.B, loads []*load) []*load {
	only := os.Getenv("MOAT_BENCH_ONLY")
	if only == "" {
		return loads
	}
	i := slices.IndexFunc(loads, func(l *load) bool { return l.name == only })
	if i < 0 {
		names := make([]string, len(loads))
		for k, l := range loads {
			names[k] = l.name
		}
		b.Fatalf("MOAT_BENCH_ONLY=%q names none of this benchmark's paths: %s", only, strings.Join(names, ", "))
	}
	out := make([]*load, len(loads))
	for k := range out {
		out[k] = loads[i]
	}
	return out
}

// failOnErrors fails the benchmark if any request of loads failed.
func failOnErrors(b *testing.B, loads []*load) {
	for _, l := range loads {
		if f := l.failed.Load(); f > 0 {
			b.Fatalf("%s: %d of %d requests failed (first: %v)", l.name, f, len(l.latencies), l.firstErr.Load())
		}
	}
}

// reportLateness reports how late the loads sent their requests, over all
// paths: the pacing's own error, which every latency includes.
func reportLateness(b *testing.B, loads []*load) {
	var late []time.Duration
	for _, l := range loads {
		late = append(late, l.late...)
	}
	sent := percentiles(late)
	b.ReportMetric(sent.p50, "sent-late-p50-µs")
	b.ReportMetric(sent.p99, "sent-late-p99-µs")
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

// BenchmarkPacing reports how late each way of sleeping until a request
// is due wakes, 400 µs ahead, as the load of BenchmarkGatewayOverhead
// sleeps at 2,000 requests a second:
//
//	go test -run '^$' -bench Pacing -benchtime 2000x ./internal/api/
func BenchmarkPacing(b *testing.B) {
	pace, err := newPacer()
	if err != nil {
		b.Fatal(err)
	}
	defer pace.Close()
	for _, way := range []struct {
		name  string
		sleep func(time.Time)
	}{
		{"time.Sleep", func(t time.Time) { time.Sleep(time.Until(t)) }},
		{"pacer", func(t time.Time) {
			if err := pace.sleepUntil(t); err != nil {
				b.Fatal(err)
			}
		}},
	} {
		b.Run(way.name, func(b *testing.B) {
			var late []time.Duration
			for b.Loop() {
				due := time.Now().Add(400 * time.Microsecond)
				way.sleep(due)
				late = append(late, time.Since(due))
			}
			p := percentiles(late)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(p.p50, "late-p50-µs")
			b.ReportMetric(p.p99, "late-p99-µs")
		})
	}
}
