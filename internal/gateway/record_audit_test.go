package gateway

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/audit/audittest"
)

// Every call, allowed or refused, leaves an audit record naming who, where
// to and what was decided, and no planted value in clear or encoded; a call
// that goes out is recorded as requested before it is sent.
func TestAuditRecorderRecordsCallsWithoutPayloads(t *testing.T) {
	t.Parallel()
	log, st := audittest.New(t)
	up := newFakeUpstream(t)
	g := newTestGateway(t, upstreamResources(up.srv.URL), func(c *Config) { c.Recorder = AuditRecorder{Log: log} })

	ok := Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{
		userMsg("Customer " + planted["pii.email"] + " paid with card " + planted["pii.card"] + ".")}}
	if _, err := g.Chat(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	refused := Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("summarise")},
		Data: []DataItem{{Name: "ticket", Value: injectionText}}}
	wantCode(t, func() error { _, err := g.Chat(context.Background(), refused); return err }(), CodeInjection)

	recs, err := st.ListAudit(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d audit records, want 3", len(recs))
	}
	for i, want := range []string{"requested", "ok", "denied"} {
		r := recs[i]
		if r.Action != "ai.call" || r.Outcome != want || r.Actor != "key:"+keyIdentity().ID || r.Resource != "model/chat" {
			t.Errorf("record %d = %s %s %s %s", i, r.Actor, r.Action, r.Resource, r.Outcome)
		}
		var d map[string]any
		if err := json.Unmarshal(r.Details, &d); err != nil {
			t.Fatal(err)
		}
		if d["requestId"] == "" || d["environment"] != "dev" {
			t.Errorf("record %d details = %s", i, r.Details)
		}
		for class, v := range planted {
			for _, enc := range []string{v, base64.StdEncoding.EncodeToString([]byte(v)), hex.EncodeToString([]byte(v))} {
				if strings.Contains(string(r.Details), enc) {
					t.Errorf("record %d holds the planted %s", i, class)
				}
			}
		}
	}
	for _, r := range recs[:2] {
		if !strings.Contains(string(r.Details), `"findings":{`) || !strings.Contains(string(r.Details), `"tokenize":`) || !strings.Contains(string(r.Details), `"inputSha256"`) {
			t.Errorf("the allowed call's record lacks findings, decisions or digest: %s", r.Details)
		}
	}
}

// A call whose audit record cannot be committed fails, and nothing is sent
// to the upstream.
func TestAuditRecorderFailsClosed(t *testing.T) {
	t.Parallel()
	log, _ := audittest.New(t)
	up := newFakeUpstream(t)
	g := newTestGateway(t, upstreamResources(up.srv.URL), func(c *Config) { c.Recorder = AuditRecorder{Log: log} })
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("hello")}})
	if err == nil || res.Content != "" {
		t.Fatalf("call succeeded without its audit record: %q, %v", res.Content, err)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("%d upstream requests, want none", n)
	}
}
