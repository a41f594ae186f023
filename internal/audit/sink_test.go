package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readExport concatenates files (oldest first) and verifies them as one
// export.
func verifyFiles(t *testing.T, verifierKey []byte, paths ...string) Report {
	t.Helper()
	var all bytes.Buffer
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	v, err := ParseVerifierKey(verifierKey)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(t.Context(), FileSource(&all), v, VerifyOptions{})
	if err != nil {
		t.Fatalf("verify %v: %v", paths, err)
	}
	return rep
}

func TestFileSinkRotatesAndVerifies(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	dir := t.TempDir()
	skey, vkey := genKeyText(t)
	signer, _ := ParseSigningKey([]byte(skey))
	path := filepath.Join(dir, "audit.jsonl")
	fs, err := NewFileSink(path, FileSinkOptions{MaxBytes: 64 << 10, Keep: 50})
	if err != nil {
		t.Fatal(err)
	}
	_, _, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{Sinks: []Sink{fs}, Require: []string{"file"}, CheckpointEvery: 100})
	for i := range 1000 {
		if _, err := l.Append(t.Context(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("sink file: %v %v", info, err)
	}
	var files []string
	for k := 50; k >= 1; k-- {
		p := path + "." + strconv.Itoa(k)
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	if len(files) < 2 {
		t.Fatalf("%d rotated files, want several", len(files))
	}
	rep := verifyFiles(t, []byte(vkey), append(files, path)...)
	if rep.Records != 1000 || rep.Covered != 1000 {
		t.Fatalf("sink files verify as %+v", rep)
	}
	// Each file verifies on its own too: those after the first start
	// with the frontier of the records before them.
	for _, p := range append(files, path) {
		verifyFiles(t, []byte(vkey), p)
	}
}

// TestFileSinkSkipsRedelivered: after a restart the Log sends again what
// the file may already hold, starting with a frontier line; the file keeps
// each record once and still verifies.
func TestFileSinkSkipsRedelivered(t *testing.T) {
	t.Parallel()
	signer, verifier, _ := testKeys(t)
	var tree frontier
	var lines []Line
	for i := range int64(20) {
		st := testStoredRecord(i)
		s := stored{Seq: st.Seq, Time: st.Time, Actor: st.Actor, Action: st.Action, Resource: st.Resource, Outcome: st.Outcome, Details: st.Details}
		leaf, _ := leafHash(nil, &s)
		lines = append(lines, Line{Type: LineRecord, Record: &st, Hash: leaf})
		tree.push(leaf, nil)
		if i == 11 || i == 19 {
			cp, err := (&Log{signer: signer}).sign(&tree, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, Line{Type: LineCheckpoint, Checkpoint: &cp})
		}
	}
	frontierAt := func(n int) Line {
		var f frontier
		for _, l := range lines {
			if l.Type == LineRecord && f.size < int64(n) {
				f.push(l.Hash, nil)
			}
		}
		return Line{Type: LineFrontier, Size: f.size, Hashes: f.nodes}
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := NewFileSink(path, FileSinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Write(t.Context(), lines[:10]); err != nil { // records 0..9
		t.Fatal(err)
	}
	fs.Close()
	// A torn line from a crash mid-write is cut off on reopening.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"type":"record","seq":10,"ti`)
	f.Close()
	fs, err = NewFileSink(path, FileSinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	// Resumed from a cursor at 6: records 6..9 come again.
	if err := fs.Write(t.Context(), append([]Line{frontierAt(6)}, lines[6:]...)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	rep, err := Verify(t.Context(), FileSource(bytes.NewReader(b)), verifier, VerifyOptions{})
	if err != nil || rep.Records != 20 || rep.Covered != 20 {
		t.Fatalf("the file verifies as %+v, %v\n%s", rep, err, b)
	}
}

func genKeyText(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := LoadOrCreateKeys(dir); err != nil {
		t.Fatal(err)
	}
	s, _ := os.ReadFile(filepath.Join(dir, SigningKeyFile))
	v, _ := os.ReadFile(filepath.Join(dir, VerifierKeyFile))
	return string(s), string(v)
}

func TestFileSinkKeepsN(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "a.jsonl")
	fs, err := NewFileSink(path, FileSinkOptions{MaxBytes: 1, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	rec := testStoredLine(0)
	for i := range 5 {
		rec.Record.Seq = int64(i)
		if err := fs.Write(t.Context(), []Line{rec}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{path + ".1", path + ".2"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a third rotated file is kept: %v", err)
	}
	b, _ := os.ReadFile(path + ".1")
	ls := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	l, err := ParseLine(ls[len(ls)-1])
	if err != nil || l.Record.Seq != 4 {
		t.Fatalf("newest rotated file holds %v (%v), want record 4", l.Record, err)
	}
}

// webhookServer fails its first failures requests, then records bodies.
type webhookServer struct {
	failures atomic.Int64
	mu       sync.Mutex
	seqs     []int64
	lines    int
	body     bytes.Buffer
}

func (w *webhookServer) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer siem-token" || r.Header.Get("Content-Type") != "application/x-ndjson" {
		http.Error(rw, "bad headers", http.StatusUnauthorized)
		return
	}
	if w.failures.Add(-1) >= 0 {
		http.Error(rw, "busy", http.StatusServiceUnavailable)
		return
	}
	b, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	defer w.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxLine)
	for sc.Scan() {
		l, err := ParseLine(sc.Bytes())
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.lines++
		if l.Type == LineRecord {
			w.seqs = append(w.seqs, l.Record.Seq)
		}
	}
	w.body.Write(b)
}

func TestWebhookSinkRetriesInOrder(t *testing.T) {
	t.Parallel()
	ws := &webhookServer{}
	ws.failures.Store(3)
	srv := httptest.NewServer(ws)
	defer srv.Close()
	sink, err := NewWebhookSink(WebhookOptions{URL: srv.URL, Header: http.Header{"Authorization": {"Bearer siem-token"}}, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{Sinks: []Sink{sink}, CheckpointEvery: 50, Timeout: 10 * time.Second})
	for i := range 300 {
		// Not required: appends succeed while the webhook fails.
		if _, err := l.Append(t.Context(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if len(ws.seqs) != 300 {
		t.Fatalf("webhook received %d records, want 300", len(ws.seqs))
	}
	for i, q := range ws.seqs {
		if q != int64(i) {
			t.Fatalf("webhook record %d has seq %d: out of order or repeated", i, q)
		}
	}
	rep, err := Verify(t.Context(), FileSource(bytes.NewReader(ws.body.Bytes())), verifier, VerifyOptions{})
	if err != nil || rep.Covered != 300 {
		t.Fatalf("the webhook's copy verifies as %+v, %v", rep, err)
	}
	st := l.Stats()
	if st.Sinks[0].Failures < 3 || st.Sinks[0].Next != 300 {
		t.Fatalf("stats %+v: want the 3 failures counted and the sink at 300", st)
	}
}

// hangingSink never returns from Write until its context ends.
type hangingSink struct {
	name    string
	entered chan struct{}
	once    sync.Once
}

func (h *hangingSink) Name() string { return h.name }
func (h *hangingSink) Write(ctx context.Context, _ []Line) error {
	h.once.Do(func() { close(h.entered) })
	<-ctx.Done()
	return ctx.Err()
}
func (h *hangingSink) Close() error { return nil }

func TestHangingSink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		required bool
	}{{"required sink fails appends", true}, {"optional sink does not", false}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := openStore(t)
			signer, verifier, hkey := testKeys(t)
			h := &hangingSink{name: "siem", entered: make(chan struct{})}
			opts := Options{Sinks: []Sink{h}, Timeout: 100 * time.Millisecond}
			if tc.required {
				opts.Require = []string{"siem"}
			}
			l, err := Open(t.Context(), s, signer, hkey, opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = l.Append(t.Context(), testRecord(0))
			if tc.required && !errors.Is(err, ErrSink) {
				t.Fatalf("append with a hanging required sink: %v, want ErrSink", err)
			}
			if !tc.required && err != nil {
				t.Fatalf("append with a hanging optional sink: %v", err)
			}
			<-h.entered
			// Close gives up on the sink after the timeout and says so.
			if err := l.Close(); err == nil {
				t.Fatal("Close did not report the sink left behind")
			}
			// The database has the record either way, and the sink resumes
			// from its cursor next time.
			verifyStore(t, s, verifier)
			if next, err := s.AuditSinkCursor(t.Context(), "siem"); err != nil || next != 0 {
				t.Fatalf("cursor %d, %v: want 0", next, err)
			}
		})
	}
}

// TestSinkResumesFromCursor: records committed while a sink was away
// reach it, in order, when the log opens again.
func TestSinkResumesFromCursor(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	open := func() *FileSink {
		fs, err := NewFileSink(path, FileSinkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	l := openLog(t, s, signer, hkey, Options{Sinks: []Sink{open()}})
	fill(t, l, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A run without the sink.
	l = openLog(t, s, signer, hkey, Options{})
	fill(t, l, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, s, signer, hkey, Options{Sinks: []Sink{open()}, Require: []string{"file"}})
	fill(t, l, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	rep, err := Verify(t.Context(), FileSource(bytes.NewReader(b)), verifier, VerifyOptions{})
	if err != nil || rep.Records != 30 || rep.Covered != 30 {
		t.Fatalf("the sink's file verifies as %+v, %v", rep, err)
	}
}

func testStoredLine(seq int64) Line {
	st := testStoredRecord(seq)
	return Line{Type: LineRecord, Record: &st}
}
