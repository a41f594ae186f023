package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// A service audits an action before it performs it, and fails closed when
// the record cannot be written. Anyone with the public key verifies the
// log offline.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "moat-audit-example")
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "moat.db"))
	if err != nil {
		panic(err)
	}
	defer st.Close()
	keys, err := audit.LoadOrCreateKeys(dir) // audit-signing.key, audit-signing.pub, audit-hmac.key
	if err != nil {
		panic(err)
	}
	log, err := audit.Open(ctx, st, keys.Signer, keys.HMAC, audit.Options{})
	if err != nil {
		panic(err)
	}

	seqs, err := log.Append(ctx, audit.Record{
		Actor: "user:ana", Action: "secret.read", Resource: "secret/prod/stripe", Outcome: audit.OK,
		// Stored only as hmac-sha256:<hex>; log.HMAC finds it again.
		Details: map[string]any{"customer": audit.Sensitive("ana@example.com"), "env": "prod"},
	})
	if err != nil {
		return // fail closed: do not read the secret
	}
	fmt.Println("appended", seqs)
	log.Close() // signs a last checkpoint

	rep, err := audit.Verify(ctx, audit.StoreSource(st, 0), keys.Verifier, audit.VerifyOptions{})
	fmt.Println(rep.Records, "records verified,", rep.Covered, "covered by a signed checkpoint, error:", err)
	// Output:
	// appended [0]
	// 1 records verified, 1 covered by a signed checkpoint, error: <nil>
}

// callDetails writes an AI call's details in sorted key order, as a hot
// path does instead of building a map for each record.
type callDetails struct {
	requestID, person string
	tokens            int
}

func (d callDetails) WriteDetails(w *audit.DetailsWriter) {
	w.Object()
	w.Key("person")
	w.Sensitive(audit.Sensitive(d.person))
	w.Key("requestId")
	w.String(d.requestID)
	w.Key("tokens")
	w.Int(int64(d.tokens))
	w.End()
}

// A record's details written by the caller are stored byte for byte as
// the same details given as a map would be.
func ExampleDetailsWriter() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "moat-audit-example")
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "moat.db"))
	if err != nil {
		panic(err)
	}
	defer st.Close()
	keys, err := audit.LoadOrCreateKeys(dir)
	if err != nil {
		panic(err)
	}
	log, err := audit.Open(ctx, st, keys.Signer, keys.HMAC, audit.Options{})
	if err != nil {
		panic(err)
	}
	defer log.Close()

	written := callDetails{requestID: "req_1", person: "ana@example.com", tokens: 50}
	asMap := map[string]any{"tokens": 50, "requestId": "req_1", "person": audit.Sensitive("ana@example.com")}
	if _, err := log.Append(ctx,
		audit.Record{Actor: "key:ci", Action: "ai.call", Outcome: audit.OK, DetailsFrom: written},
		audit.Record{Actor: "key:ci", Action: "ai.call", Outcome: audit.OK, Details: asMap},
	); err != nil {
		panic(err)
	}
	recs, err := st.ListAudit(ctx, 0, 2)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(recs[0].Details) == string(recs[1].Details))
	// Output:
	// true
}
