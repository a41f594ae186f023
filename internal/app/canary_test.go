package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/detect"
	"github.com/moatproject/moat/internal/manifest"
	"github.com/moatproject/moat/internal/vault"
)

// TestCanaryValuesNeverLeak is the suite-wide canary test of issues 4 and
// 5. It plants secret values in the vault through the API and personal
// data in the inputs of every example workflow, of a workflow of its own
// with AI steps through an openai and an http connector, and of the
// OpenAI-compatible endpoint; it rotates the vault's key and exports the
// audit log. Then it scans everything the run left behind for the planted
// values in clear, base64 and hex:
//
//   - secrets: every file of the data dir (database, WAL, keys but the
//     vault's root key), the audit file sink and the exports, the audit
//     tables, every log line and every API answer: zero hits;
//   - personal data: the audit tables, the audit file sink, the exports
//     and the logs: zero hits; and each request body that carried it is
//     found in the audit log by its HMAC, as `moat audit hmac` computes it.
//
// The fake upstreams check that they were sent the secrets, so the test
// cannot pass by never sending them.
func TestCanaryValuesNeverLeak(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plant := newCanaries(t)

	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	outDir := t.TempDir() // the audit file sink and the exports
	cfg := testConfig(t)
	cfg.Environment = "dev"
	cfg.AllowPrivateEgress = true // the fakes listen on loopback
	cfg.AuditFile = filepath.Join(outDir, "audit.jsonl")
	cfg.AuditRequire = []string{"file"} // each record is in the file before its action goes ahead

	a, err := app.Open(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	shutdown := func() {
		if !closed {
			closed = true
			if err := a.Engine.Stop(ctx); err != nil {
				t.Errorf("engine stop: %v", err)
			}
			a.Close()
		}
	}
	t.Cleanup(shutdown)
	token, err := a.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a.Handler())
	srv.Config.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	srv.Start()
	t.Cleanup(srv.Close)
	c := &apiClient{t: t, base: srv.URL, token: token, pii: plant.piiForms()}

	openaiUp := newFakeOpenAI(t, plant.secrets[openaiSecret])
	httpUp := newFakeJSONModel(t, plant.secrets[httpSecret])
	elsewhere := newFakeOpenAI(t, plant.secrets[openaiSecret]) // a host the secret is not bound to
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(health.Close)

	// Secrets, set through the API, each twice: the first version is a
	// canary too.
	for _, s := range []struct{ name, connectors, host string }{
		{openaiSecret, "openai,canary-openai", hostOf(t, openaiUp.srv.URL)},
		{httpSecret, "canary-http", hostOf(t, httpUp.srv.URL)},
	} {
		for i, value := range []string{plant.secrets[s.name+oldVersion], plant.secrets[s.name]} {
			c.do(http.MethodPut, "/api/v1/secrets/dev/"+s.name, map[string]any{
				"value": value, "connectors": strings.Split(s.connectors, ","), "hosts": []string{s.host},
			}, []int{http.StatusCreated, http.StatusOK}[i])
		}
		c.do(http.MethodGet, "/api/v1/secrets/dev/"+s.name, nil, http.StatusOK)
	}

	// The gateway's resources: an openai connector and an http one whose
	// credentials are those secrets, and an openai connector on a host the
	// secret is not bound to.
	c.do(http.MethodPut, "/api/v1/vendors/canary-cloud", map[string]any{"location": "managed-service", "region": "eu", "retentionDays": 0}, http.StatusCreated)
	c.do(http.MethodPut, "/api/v1/connectors/canary-openai", map[string]any{
		"type": "openai", "vendor": "canary-cloud", "baseURL": openaiUp.srv.URL + "/v1",
		"credential": map[string]any{"secret": openaiSecret}, "models": []string{"gpt-canary"},
	}, http.StatusCreated)
	c.do(http.MethodPut, "/api/v1/connectors/canary-http", map[string]any{
		"type": "http", "vendor": "canary-cloud", "models": []string{"canary-echo"},
		"credential": map[string]any{"secret": httpSecret, "header": "X-Api-Key"},
		"http": map[string]any{
			"url":      httpUp.srv.URL + "/complete",
			"body":     map[string]any{"model": "{{ model }}", "system": "{{ system }}", "input": "{{ prompt }}"},
			"response": "result.text",
		},
	}, http.StatusCreated)
	c.do(http.MethodPut, "/api/v1/connectors/canary-elsewhere", map[string]any{
		"type": "openai", "vendor": "canary-cloud", "baseURL": elsewhere.srv.URL + "/v1",
		"credential": map[string]any{"secret": openaiSecret}, "models": []string{"gpt-canary"},
	}, http.StatusCreated)

	// Every example, and the hosted-model one with its connector sent to
	// the fake upstream and its key taken from the vault.
	examples, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	var workflows []string
	for _, path := range examples {
		workflows = append(workflows, c.applyFile(path, nil)...)
	}
	workflows = append(workflows, c.applyFile(filepath.Join("..", "..", "examples", "openai", "quickstart-openai.yaml"), func(kind, name string, spec map[string]any) {
		if kind == "Connector" && name == "openai" {
			spec["baseURL"] = openaiUp.srv.URL + "/v1"
			spec["credential"] = map[string]any{"secret": openaiSecret}
		}
	})...)
	workflows = append(workflows, c.applyFile(filepath.Join("testdata", "canary-pii.yaml"), nil)...)

	var runs []string
	for _, wf := range workflows {
		ran := runExample(c, wf, plant, health.URL)
		if len(ran) == 0 {
			t.Errorf("workflow %s has no canary run: add one to runExample, or say there why it cannot run without an external service", wf)
		}
		runs = append(runs, ran...)
	}

	// The OpenAI-compatible endpoint, plain and streamed, through both
	// connectors; and once through a connector the secret may not go to.
	prompt := fmt.Sprintf("Write to %s: the card %s was charged twice; call %s.", plant.pii["email"][0], plant.pii["card"][0], plant.pii["phone"][0])
	chat := func(model string, stream bool, want int) {
		c.do(http.MethodPost, "/v1/chat/completions", map[string]any{
			"model": model, "stream": stream,
			"messages": []any{map[string]any{"role": "user", "content": prompt}},
		}, want)
	}
	chat("canary-openai/gpt-canary", false, http.StatusOK)
	chat("canary-openai/gpt-canary", true, http.StatusOK)
	chat("canary-http/canary-echo", false, http.StatusOK)
	chat("canary-elsewhere/gpt-canary", false, http.StatusForbidden)

	// Key rotation: a new term, every data key rewrapped to it, and a call
	// that opens the secret under the new term.
	c.do(http.MethodPost, "/api/v1/vault/rotate", nil, http.StatusOK)
	c.waitRewrap()
	chat("canary-openai/gpt-canary", false, http.StatusOK)

	// What an operator reads: runs, steps, tasks, secrets, connectors.
	c.do(http.MethodGet, "/api/v1/runs?limit=500", nil, http.StatusOK)
	for _, id := range runs {
		c.do(http.MethodGet, "/api/v1/runs/"+id, nil, http.StatusOK)
	}
	for _, path := range []string{"/api/v1/tasks?status=all", "/api/v1/secrets", "/api/v1/secrets?rotation=ok", "/api/v1/connectors", "/api/v1/vendors", "/api/v1/models", "/api/v1/vault"} {
		c.do(http.MethodGet, path, nil, http.StatusOK)
	}

	// The fakes got the secrets (so the scan below is of a run that used
	// them), and the unbound host got nothing.
	if n, bad := openaiUp.counts(); n == 0 || bad != 0 {
		t.Errorf("openai upstream: %d calls with the key, %d without", n, bad)
	}
	if n, bad := httpUp.counts(); n == 0 || bad != 0 {
		t.Errorf("http upstream: %d calls with the key, %d without", n, bad)
	}
	if n, bad := elsewhere.counts(); n+bad != 0 {
		t.Errorf("the host the secret is not bound to got %d requests", n+bad)
	}

	// moat audit export, whole and from the middle (a frontier line first).
	exportAudit(t, a, filepath.Join(outDir, "export.jsonl"), 0)
	exportAudit(t, a, filepath.Join(outDir, "export-since.jsonl"), a.Audit.Size()/2)

	records := auditRecords(t, a)
	checkPIIHMACs(t, a, cfg.DataDir, outDir, records, c.sentWithPII(), plant)
	checkFindings(t, records)

	auditTables := readAuditTables(t, a)
	scan := func(stage string) {
		t.Helper()
		var targets []scanTarget
		// Run payloads are sealed under per-run keys: no planted personal
		// data may be in the database files either.
		targets = append(targets, dirTargets(t, cfg.DataDir, true)...)
		targets = append(targets, dirTargets(t, outDir, true)...)
		targets = append(targets,
			scanTarget{name: "the captured log", data: logs.Bytes(), pii: true, control: `"level"`},
			scanTarget{name: "the API's answers", data: c.answers(), pii: false, control: `"connectors"`},
		)
		if auditTables != nil {
			targets = append(targets, scanTarget{name: "the audit tables", data: auditTables, pii: true, control: "ai.call"})
		}
		// Secrets' names are stored in clear: in the database, or in its
		// WAL until a checkpoint moves them.
		if !slices.ContainsFunc(targets, func(tg scanTarget) bool {
			return strings.HasPrefix(filepath.Base(tg.name), "moat.db") && bytes.Contains(tg.data, []byte(httpSecret))
		}) {
			t.Errorf("%s: neither the database nor its WAL holds the control string %q, so the scan cannot see into them", stage, httpSecret)
		}
		for _, tg := range targets {
			if tg.control != "" && !bytes.Contains(tg.data, []byte(tg.control)) {
				t.Errorf("%s: %s lacks the control string %q, so the scan cannot see into it", stage, tg.name, tg.control)
			}
			for _, hit := range plant.hits(tg.data, tg.pii) {
				t.Errorf("%s: %s holds %s", stage, tg.name, hit)
			}
		}
	}
	scan("while running")
	if !fileHasData(filepath.Join(cfg.DataDir, "moat.db-wal")) {
		t.Error("no WAL to scan while running")
	}

	// Once stopped: the WAL checkpointed into the database, the last audit
	// checkpoint signed into the file sink.
	srv.Close()
	shutdown()
	auditTables = nil
	scan("after shutdown")
}

// The secrets the test plants, by vault name; name+oldVersion is the value
// of each one's first version.
const (
	openaiSecret = "CANARY_OPENAI_KEY"
	httpSecret   = "CANARY_HTTP_KEY"
	oldVersion   = "@v1"
)

// canaries are the planted values: random in each run, so that nothing
// but this run can have put them anywhere.
type canaries struct {
	secrets map[string]string
	// pii maps a kind (email, card, phone) to its forms: as planted first,
	// then as it may be normalised (digits only, E.164).
	pii map[string][]string
}

func newCanaries(t *testing.T) canaries {
	t.Helper()
	digits := func(n int) string {
		var b strings.Builder
		for range n {
			d, err := rand.Int(rand.Reader, big.NewInt(10))
			if err != nil {
				t.Fatal(err)
			}
			b.WriteByte(byte('0' + d.Int64()))
		}
		return b.String()
	}
	card := "4" + digits(14)
	card += luhnDigit(card)
	phone := digits(3) // +44 20 7946 0xxx: the UK's range for drama, valid and never anyone's
	c := canaries{
		secrets: map[string]string{
			openaiSecret:              "sk-canary-" + randomHex(t, 20),
			openaiSecret + oldVersion: "sk-canary-old-" + randomHex(t, 20),
			httpSecret:                "canary-http-" + randomHex(t, 20),
			httpSecret + oldVersion:   "canary-http-old-" + randomHex(t, 20),
		},
		pii: map[string][]string{
			"email": {"ana.canary." + randomHex(t, 4) + "@example.com"},
			"card":  {card[0:4] + " " + card[4:8] + " " + card[8:12] + " " + card[12:], card},
			"phone": {"+44 20 7946 0" + phone, "+442079460" + phone},
		},
	}
	return c
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// luhnDigit is the check digit that makes number pass the Luhn test, so
// the card canary is found by the detectors like a real one.
func luhnDigit(number string) string {
	sum := 0
	for i := len(number) - 1; i >= 0; i-- {
		d := int(number[i] - '0')
		if (len(number)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return string(rune('0' + (10-sum%10)%10))
}

// piiForms lists every form of every personal-data canary.
func (c canaries) piiForms() []string {
	var out []string
	for _, forms := range c.pii {
		out = append(out, forms...)
	}
	return out
}

// hits names each canary found in data, with the encoding it was found in;
// personal data only when pii is set.
func (c canaries) hits(data []byte, pii bool) []string {
	var found []string
	for name, value := range c.secrets {
		found = append(found, encodedHits(data, "secret "+name, value)...)
	}
	if pii {
		for kind, forms := range c.pii {
			for _, f := range forms {
				found = append(found, encodedHits(data, kind+" "+f, f)...)
			}
		}
	}
	return found
}

func encodedHits(data []byte, label, value string) []string {
	var found []string
	for _, e := range encodings(value) {
		if i := bytes.Index(data, []byte(e.text)); i >= 0 {
			found = append(found, fmt.Sprintf("%s %s at byte %d", label, e.name, i))
		}
	}
	return found
}

type encoding struct{ name, text string }

// encodings are the forms value would take stored in clear, in hex (either
// case) or in base64 (standard and URL alphabets, padded and not). Inside
// longer base64 a value's encoding depends on where it starts; the part
// that depends on the value alone is added for each of the three starts.
func encodings(value string) []encoding {
	b := []byte(value)
	out := []encoding{
		{"in clear", value},
		{"as hex", hex.EncodeToString(b)},
		{"as upper-case hex", strings.ToUpper(hex.EncodeToString(b))},
	}
	for _, alphabet := range []struct {
		name string
		enc  *base64.Encoding
	}{{"standard", base64.StdEncoding}, {"URL", base64.URLEncoding}} {
		out = append(out,
			encoding{"as " + alphabet.name + " base64", alphabet.enc.EncodeToString(b)},
			encoding{"as unpadded " + alphabet.name + " base64", alphabet.enc.WithPadding(base64.NoPadding).EncodeToString(b)},
		)
		for offset := range 3 {
			shifted := append(make([]byte, offset), b...)
			enc := alphabet.enc.EncodeToString(shifted)
			from, to := 0, 4*(len(shifted)/3)
			if offset > 0 {
				from = 4 // the first group holds bytes before the value
			}
			if to-from >= 8 {
				out = append(out, encoding{fmt.Sprintf("as %s base64 inside longer base64 (offset %d)", alphabet.name, offset), enc[from:to]})
			}
		}
	}
	return out
}

// scanTarget is something the test scans. Secrets are looked for in every
// target, personal data only where pii is set: not in the API's answers,
// where a run's view shows its restored input and output by design.
type scanTarget struct {
	name string
	data []byte
	pii  bool
	// control is a string the target must hold, to show the scan reads
	// what was written there.
	control string
}

// dirTargets reads every file under dir, but the vault's root key (the
// one file that is meant to open the secrets). The audit sink and the
// exports must hold their control strings.
func dirTargets(t *testing.T, dir string, pii bool) []scanTarget {
	t.Helper()
	var out []scanTarget
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == vault.KeyFileName {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tg := scanTarget{name: path, data: data, pii: pii}
		switch d.Name() {
		case "audit.jsonl", "export.jsonl", "export-since.jsonl":
			tg.control = `"ai.call"`
		}
		out = append(out, tg)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileHasData(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Size() > 0
}

func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// runExample starts the runs of one workflow with canaries in their input
// and waits for them to end as they should; it returns their ids, none for
// a workflow it does not know.
func runExample(c *apiClient, workflow string, plant canaries, healthURL string) []string {
	t := c.t
	t.Helper()
	email, card, phone := plant.pii["email"][0], plant.pii["card"][0], plant.pii["phone"][0]
	switch workflow {
	case "sales/order-totals":
		input, err := os.ReadFile(filepath.Join("..", "..", "examples", "inputs", "order-totals.json"))
		if err != nil {
			t.Fatal(err)
		}
		return []string{c.runToEnd(workflow, json.RawMessage(input), "succeeded")}
	case "ops/uptime":
		return []string{c.runToEnd(workflow, map[string]any{"url": healthURL + "/healthz"}, "succeeded")}
	case "quickstart/support-quickstart":
		input := map[string]any{
			"message": "I was charged twice this month, please refund me. Call " + phone + " or write to " + email + ".",
			"email":   email, "card": card,
		}
		return []string{c.runToEnd(workflow, input, "succeeded"), c.hookToEnd("quickstart", input, "succeeded")}
	case "quickstart/support-reply":
		return []string{c.hookToEnd("quickstart-reply", map[string]any{
			"message": "My card " + card + " was declined, please call me on " + phone + ".", "email": email,
		}, "succeeded")}
	case "support/ticket-triage":
		// A refund waits for a reviewer, whose comment names the customer;
		// a bug report is closed at once.
		refund := c.hookToEnd("tickets", map[string]any{
			"email": email, "subject": "Refund for card " + card, "body": "Please refund me; call " + phone + ".", "amount": 42,
		}, "waiting")
		var tasks struct {
			Tasks []struct{ ID string } `json:"tasks"`
		}
		decode(t, c.do(http.MethodGet, "/api/v1/tasks?run="+refund, nil, http.StatusOK), &tasks)
		if len(tasks.Tasks) != 1 {
			t.Fatalf("refund run has %d tasks", len(tasks.Tasks))
		}
		c.do(http.MethodPost, "/api/v1/tasks/"+tasks.Tasks[0].ID+"/approve", map[string]any{"comment": "Refunded; told " + email + " on " + phone}, http.StatusOK)
		c.waitRun(refund, "succeeded")
		bug := c.hookToEnd("tickets", map[string]any{"email": email, "subject": "Login", "body": "I get an error when I sign in as " + email}, "succeeded")
		return []string{refund, bug}
	case "canary/canary-pii":
		input := map[string]any{
			"email": email, "card": card, "phone": phone,
			"message": "Hi, I am " + email + ". My card " + card + " was charged twice; call me on " + phone + ".",
		}
		return []string{c.runToEnd(workflow, input, "succeeded"), c.hookToEnd("canary-pii", input, "succeeded")}
	}
	return nil
}

// apiClient calls the server with the bootstrap token and keeps every
// answer, and every body that carried personal data to a route the API
// audits.
type apiClient struct {
	t     *testing.T
	base  string
	token string
	pii   []string

	mu      sync.Mutex
	bodies  [][]byte
	withPII []sentBody
}

// sentBody is a request body as sent, byte for byte.
type sentBody struct {
	route string
	body  []byte
}

// do sends body (JSON unless it is already json.RawMessage) and fails the
// test unless the answer has one of the statuses want.
func (c *apiClient) do(method, path string, body any, want ...int) []byte {
	c.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case json.RawMessage:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			c.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	c.keep(method, path, raw, answer)
	if !slices.Contains(want, res.StatusCode) {
		// The answer is the server's; it is scanned with the others, so it
		// may be shown here.
		c.t.Fatalf("%s %s: status %d, want %v: %s", method, path, res.StatusCode, want, answer)
	}
	return answer
}

// keep keeps an answer, and the body of a request the API audits when it
// carried personal data. The API records the HMAC of each mutating
// request's body; the gateway records the AI calls of /v1/ itself, with
// digests of what left.
func (c *apiClient) keep(method, path string, sent, answer []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodies = append(c.bodies, answer)
	if method != http.MethodGet && !strings.HasPrefix(path, "/v1/") &&
		slices.ContainsFunc(c.pii, func(v string) bool { return bytes.Contains(sent, []byte(v)) }) {
		c.withPII = append(c.withPII, sentBody{route: method + " " + path, body: sent})
	}
}

func (c *apiClient) answers() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.bodies, []byte("\n"))
}

func (c *apiClient) sentWithPII() []sentBody {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.withPII)
}

// applyFile applies every document of a manifest as `moat apply` does:
// gateway resources with PUT, after rewrite sees each; workflows with
// POST. It returns the workflows as project/name.
func (c *apiClient) applyFile(path string, rewrite func(kind, name string, spec map[string]any)) []string {
	c.t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	docs, err := manifest.Split(path, src)
	if err != nil {
		c.t.Fatal(err)
	}
	plural := map[string]string{"Vendor": "vendors", "Connector": "connectors", "Model": "models"}
	// Resources first, in the order they name each other; then workflows.
	order := map[string]int{"Vendor": 0, "Connector": 1, "Model": 2, "Workflow": 3}
	slices.SortStableFunc(docs, func(x, y manifest.Document) int { return order[x.Kind] - order[y.Kind] })
	var workflows []string
	for _, d := range docs {
		switch d.Kind {
		case "Workflow":
			var head struct{ Project, Name string }
			var saved struct {
				Workflow struct{ Project, Name string } `json:"workflow"`
			}
			if err := yaml.Unmarshal(d.Source, &head); err != nil {
				c.t.Fatalf("%s:%d: %v", path, d.Line, err)
			}
			decode(c.t, c.do(http.MethodPost, "/api/v1/workflows", map[string]any{"source": string(d.Source), "filename": path}, http.StatusCreated), &saved)
			workflows = append(workflows, saved.Workflow.Project+"/"+saved.Workflow.Name)
		case "Vendor", "Connector", "Model":
			var spec map[string]any
			if err := yaml.Unmarshal(d.Source, &spec); err != nil {
				c.t.Fatalf("%s:%d: %v", path, d.Line, err)
			}
			for _, k := range []string{"apiVersion", "kind", "name"} {
				delete(spec, k)
			}
			if rewrite != nil {
				rewrite(d.Kind, d.Name, spec)
			}
			c.do(http.MethodPut, "/api/v1/"+plural[d.Kind]+"/"+d.Name, spec, http.StatusCreated)
		default:
			c.t.Fatalf("%s:%d: kind %s is not one the canary test applies", path, d.Line, d.Kind)
		}
	}
	return workflows
}

type runView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
	Steps  []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"steps"`
}

// runToEnd starts a run of workflow (project/name) through the API and
// waits for the status want.
func (c *apiClient) runToEnd(workflow string, input any, want string) string {
	c.t.Helper()
	project, name, _ := strings.Cut(workflow, "/")
	var run runView
	decode(c.t, c.do(http.MethodPost, "/api/v1/projects/"+project+"/workflows/"+name+"/runs", map[string]any{"input": input}, http.StatusAccepted, http.StatusOK), &run)
	c.waitRun(run.ID, want)
	return run.ID
}

// hookToEnd starts a run through the workflow's webhook and waits for the
// status want.
func (c *apiClient) hookToEnd(path string, input any, want string) string {
	c.t.Helper()
	raw, err := json.Marshal(input)
	if err != nil {
		c.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/hooks/"+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	answer, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		c.t.Fatal(err)
	}
	c.keep(http.MethodPost, "/hooks/"+path, raw, answer)
	id := res.Header.Get("X-Moat-Run-Id")
	if res.StatusCode >= 300 || id == "" {
		c.t.Fatalf("POST /hooks/%s: status %d, run %q: %s", path, res.StatusCode, id, answer)
	}
	c.waitRun(id, want)
	return id
}

// waitRun waits until run id has the status want, failing the test if it
// ends otherwise. The bound only keeps a broken run from hanging the test.
func (c *apiClient) waitRun(id, want string) {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var run runView
		wait := "10s"
		if want == "waiting" {
			wait = "0s"
		}
		decode(c.t, c.do(http.MethodGet, "/api/v1/runs/"+id+"?wait="+wait, nil, http.StatusOK, http.StatusAccepted), &run)
		if run.Status == want {
			return
		}
		if final(run.Status) || time.Now().After(deadline) {
			c.t.Fatalf("run %s: status %s, want %s: %s %+v", id, run.Status, want, run.Error, run.Steps)
		}
		if want == "waiting" {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func final(status string) bool {
	return status == "succeeded" || status == "failed" || status == "cancelled"
}

// waitRewrap waits for the vault's background rewrap to finish.
func (c *apiClient) waitRewrap() {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var v struct {
			Rewrap *struct {
				Running bool   `json:"running"`
				Error   string `json:"error"`
			} `json:"rewrap"`
		}
		decode(c.t, c.do(http.MethodGet, "/api/v1/vault", nil, http.StatusOK), &v)
		switch {
		case v.Rewrap == nil:
			c.t.Fatal("no rewrap started after the rotation")
		case v.Rewrap.Error != "":
			c.t.Fatalf("rewrap: %s", v.Rewrap.Error)
		case !v.Rewrap.Running:
			return
		case time.Now().After(deadline):
			c.t.Fatal("the rewrap did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("answer %s: %v", data, err)
	}
}

// exportAudit writes the audit log from record since to path, as `moat
// audit export --out` does, and checks that the export verifies: it is the
// log, not something that merely looks clean.
func exportAudit(t *testing.T, a *app.App, path string, since int64) {
	t.Helper()
	ctx := context.Background()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := audit.Export(ctx, a.Store, since, f)
	if err != nil || n == 0 {
		t.Fatalf("export from %d: %d records, %v", since, n, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	key, _, err := audit.LoadVerifier(filepath.Join(a.Config.DataDir, audit.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.Verify(ctx, audit.FileSource(f), key, audit.VerifyOptions{}); err != nil || rep.Records != n {
		t.Fatalf("export from %d does not verify: %+v, %v", since, rep, err)
	}
}

// auditRecord is a stored record with its details decoded.
type auditRecord struct {
	action  string
	details map[string]any
}

func auditRecords(t *testing.T, a *app.App) []auditRecord {
	t.Helper()
	if err := a.Audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []auditRecord
	for from := int64(0); ; {
		recs, err := a.Store.ListAudit(context.Background(), from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			var details map[string]any
			if err := json.Unmarshal(r.Details, &details); err != nil {
				t.Fatalf("record %d: %v", r.Seq, err)
			}
			out = append(out, auditRecord{action: r.Action, details: details})
			from = r.Seq + 1
		}
		if len(recs) < 1000 {
			return out
		}
	}
}

// readAuditTables reads every row of every audit table with SQL, so that
// a table added later is scanned too.
func readAuditTables(t *testing.T, a *app.App) []byte {
	t.Helper()
	ctx := context.Background()
	db := a.Store.WriterDB()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'audit%'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tables, "audit_records") {
		t.Fatalf("audit tables %v lack audit_records", tables)
	}
	var out bytes.Buffer
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(table, `"`, `""`)+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			values := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range values {
				switch v := v.(type) {
				case []byte:
					out.Write(v)
				default:
					fmt.Fprint(&out, v)
				}
				out.WriteByte('\n')
			}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// checkPIIHMACs checks that each request body that carried personal data
// is in the audit log by its HMAC, computed as `moat audit hmac` does from
// the data dir's key: in the database's records, the file sink and the
// export. Together the bodies cover every kind of canary. And that each
// canary is in the AI calls' records by the HMAC of its normalised form,
// in those three places, and never in clear.
func checkPIIHMACs(t *testing.T, a *app.App, dataDir, outDir string, records []auditRecord, sent []sentBody, plant canaries) {
	t.Helper()
	key, err := audit.LoadHMACKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := os.ReadFile(filepath.Join(outDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	export, err := os.ReadFile(filepath.Join(outDir, "export.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, r := range records {
		if h, ok := r.details["bodyHmac"].(string); ok {
			recorded[h] = true
		}
	}
	covered := map[string]bool{}
	for _, s := range sent {
		h := audit.HMAC(key, string(s.body))
		if h != a.Audit.HMAC(string(s.body)) {
			t.Fatal("the data dir's HMAC key is not the audit log's")
		}
		if !recorded[h] {
			t.Errorf("%s: no audit record holds the HMAC of its body", s.route)
			continue
		}
		if !bytes.Contains(sink, []byte(h)) || !bytes.Contains(export, []byte(h)) {
			t.Errorf("%s: the HMAC of its body is in the database but not in the file sink or the export", s.route)
		}
		for kind, forms := range plant.pii {
			if bytes.Contains(s.body, []byte(forms[0])) {
				covered[kind] = true
			}
		}
	}
	for kind := range plant.pii {
		if !covered[kind] {
			t.Errorf("no audited request body carried the %s canary", kind)
		}
	}

	// The AI calls' records hold each personal-data canary they carried by
	// the HMAC of its normalised form, one of those `moat audit hmac`
	// prints; the normalised form itself is nowhere in clear.
	subjects := map[string]bool{}
	var aiCalls []byte
	for _, r := range records {
		if r.action != "ai.call" {
			continue
		}
		list, _ := r.details["subjects"].([]any)
		for _, s := range list {
			if h, ok := s.(string); ok {
				subjects[h] = true
			}
		}
		b, err := json.Marshal(r.details)
		if err != nil {
			t.Fatal(err)
		}
		aiCalls = append(append(aiCalls, b...), '\n')
	}
	classes := map[string]string{"email": "pii.email", "card": "pii.card", "phone": "pii.phone"}
	for kind, forms := range plant.pii {
		class, ok := classes[kind]
		if !ok {
			t.Errorf("the %s canary has no class here: add it", kind)
			continue
		}
		normalised := detect.Normalize(class, forms[0])
		if !slices.Contains(detect.NormalizedForms(forms[0]), normalised) {
			t.Errorf("the %s canary's normalised form is not one `moat audit hmac` prints", kind)
		}
		h := audit.HMAC(key, normalised)
		if !subjects[h] {
			t.Errorf("no AI call's audit record holds the HMAC of the normalised %s canary", kind)
		}
		if !bytes.Contains(sink, []byte(h)) || !bytes.Contains(export, []byte(h)) {
			t.Errorf("the HMAC of the normalised %s canary is in the database but not in the file sink or the export", kind)
		}
		for _, tg := range []struct {
			name string
			data []byte
		}{{"the AI calls' audit records", aiCalls}, {"the audit file sink", sink}, {"the export", export}} {
			for _, hit := range encodedHits(tg.data, kind+" normalised", normalised) {
				t.Errorf("%s hold %s", tg.name, hit)
			}
		}
	}
}

// checkFindings checks that the AI calls recorded saw the personal data:
// the canaries went through the gateway, not around it.
func checkFindings(t *testing.T, records []auditRecord) {
	t.Helper()
	seen := map[string]bool{}
	var aiCalls int
	for _, r := range records {
		if r.action != "ai.call" {
			continue
		}
		aiCalls++
		findings, _ := r.details["findings"].(map[string]any)
		for class := range findings {
			seen[class] = true
		}
	}
	for _, class := range []string{"pii.email", "pii.card", "pii.phone"} {
		if !seen[class] {
			t.Errorf("no recorded AI call (of %d) found %s", aiCalls, class)
		}
	}
}

// syncBuffer is a log destination shared by every goroutine of the app.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// fakeOpenAI is an OpenAI-compatible upstream that answers only requests
// carrying its key. A request for JSON gets the tokens it was sent as
// fields; any other gets the last user message back.
type fakeOpenAI struct {
	srv *httptest.Server
	key string

	mu              sync.Mutex
	withKey, denied int
}

var tokenPattern = regexp.MustCompile(`<([A-Z]+)_[0-9]+>`)

func newFakeOpenAI(t *testing.T, key string) *fakeOpenAI {
	f := &fakeOpenAI{key: key}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpenAI) counts() (withKey, denied int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.withKey, f.denied
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	ok := r.Header.Get("Authorization") == "Bearer "+f.key
	f.mu.Lock()
	if ok {
		f.withKey++
	} else {
		f.denied++
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"message":"invalid api key","type":"invalid_request_error"}}`)
		return
	}
	var body struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Messages []struct {
			Role    string `json:"role"`
			Content any    `json:"content"`
		} `json:"messages"`
		ResponseFormat map[string]any `json:"response_format"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`)
		return
	}
	var all, lastUser string
	for _, m := range body.Messages {
		text := fmt.Sprint(m.Content)
		all += text + "\n"
		if m.Role == "user" {
			lastUser = text
		}
	}
	answer := "Noted: " + lastUser
	if body.ResponseFormat != nil {
		fields := map[string]string{"email": "none"}
		for _, m := range tokenPattern.FindAllStringSubmatch(all, -1) {
			if k := strings.ToLower(m[1]); fields[k] == "" || fields[k] == "none" {
				fields[k] = m[0]
			}
		}
		b, _ := json.Marshal(fields)
		answer = string(b)
	}
	usage := map[string]any{"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40}
	if !body.Stream {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-canary", "object": "chat.completion", "created": 1, "model": body.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": answer}, "finish_reason": "stop"}},
			"usage":   usage,
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	event := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	for piece := range slices.Chunk([]byte(answer), 5) {
		event(map[string]any{"id": "chatcmpl-canary", "object": "chat.completion.chunk", "created": 1, "model": body.Model,
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": string(piece)}}}})
	}
	event(map[string]any{"id": "chatcmpl-canary", "object": "chat.completion.chunk", "created": 1, "model": body.Model,
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
	event(map[string]any{"id": "chatcmpl-canary", "object": "chat.completion.chunk", "created": 1, "model": body.Model, "choices": []any{}, "usage": usage})
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
}

// fakeJSONModel is the http connector's upstream: a JSON endpoint that
// answers only requests carrying its key in X-Api-Key.
type fakeJSONModel struct {
	srv *httptest.Server
	key string

	mu              sync.Mutex
	withKey, denied int
}

func newFakeJSONModel(t *testing.T, key string) *fakeJSONModel {
	f := &fakeJSONModel{key: key}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeJSONModel) counts() (withKey, denied int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.withKey, f.denied
}

func (f *fakeJSONModel) serve(w http.ResponseWriter, r *http.Request) {
	ok := r.Header.Get("X-Api-Key") == f.key
	f.mu.Lock()
	if ok {
		f.withKey++
	} else {
		f.denied++
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"unauthorized"}`)
		return
	}
	var body struct {
		Input string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"bad json"}`)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"result": map[string]any{"text": "Summary: " + body.Input}})
}
