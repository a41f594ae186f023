package storetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
)

func auditRecord(seq int64) store.AuditRecord {
	return store.AuditRecord{
		Seq: seq, Time: at(time.Duration(seq) * time.Second),
		Actor: "user:ana", Action: "secret.read", Resource: fmt.Sprintf("secret/%d", seq), Outcome: "ok",
		Details: []byte(`{"n":` + fmt.Sprint(seq) + `}`),
		Hashes:  bytes.Repeat([]byte{byte(seq)}, 32*int(1+seq%3)),
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	size, err := s.AuditSize(ctx)
	must(t, err)
	equal(t, "empty size", size, int64(0))
	_, err = s.LatestAuditCheckpoint(ctx)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.AuditHashes(ctx, 0)
	wantErr(t, err, store.ErrNotFound)

	var want []store.AuditRecord
	for i := range int64(5) {
		want = append(want, auditRecord(i))
	}
	must(t, s.AppendAudit(ctx, want[:3]))
	must(t, s.InTx(ctx, func(tx store.Tx) error { return tx.AppendAudit(ctx, want[3:]) }))
	size, err = s.AuditSize(ctx)
	must(t, err)
	equal(t, "size", size, int64(5))

	got, err := s.ListAudit(ctx, 0, 100)
	must(t, err)
	equal(t, "all records", got, want)
	got, err = s.ListAudit(ctx, 3, 1)
	must(t, err)
	equal(t, "page", got, want[3:4])
	h, err := s.AuditHashes(ctx, 2)
	must(t, err)
	equal(t, "hashes", h, want[2].Hashes)

	tests := []struct {
		name string
		recs []store.AuditRecord
		err  error
	}{
		{"taken sequence", []store.AuditRecord{auditRecord(4)}, store.ErrConflict},
		{"gap after the log", []store.AuditRecord{auditRecord(6)}, store.ErrConflict},
		{"gap inside the batch", []store.AuditRecord{auditRecord(5), auditRecord(7)}, store.ErrInvalid},
	}
	for _, tc := range tests {
		wantErr(t, s.AppendAudit(ctx, tc.recs), tc.err)
	}
	_, err = s.ListAudit(ctx, 0, 0)
	wantErr(t, err, store.ErrInvalid)
	size, err = s.AuditSize(ctx)
	must(t, err)
	equal(t, "size after refused appends", size, int64(5))

	// A refused append leaves the transaction usable: a writer that finds
	// another got there first continues from the log's end in it.
	must(t, s.InTx(ctx, func(tx store.Tx) error {
		wantErr(t, tx.AppendAudit(ctx, []store.AuditRecord{auditRecord(4), auditRecord(5)}), store.ErrConflict)
		wantErr(t, tx.AppendAudit(ctx, []store.AuditRecord{auditRecord(6)}), store.ErrConflict)
		return tx.AppendAudit(ctx, []store.AuditRecord{auditRecord(5)})
	}))
	want = append(want, auditRecord(5))
	// A batch large enough to take every size of insert, and to be
	// refused whole when it does not continue the log.
	var batch []store.AuditRecord
	for i := range int64(64 + 8 + 3) {
		batch = append(batch, auditRecord(6+i))
	}
	wantErr(t, s.AppendAudit(ctx, batch[1:]), store.ErrConflict)
	must(t, s.AppendAudit(ctx, batch))
	want = append(want, batch...)
	got, err = s.ListAudit(ctx, 0, 1000)
	must(t, err)
	equal(t, "records after a batch", got, want)

	cps := []store.AuditCheckpoint{
		{Size: 3, Note: []byte("note 3\n"), CreatedAt: at(time.Minute)},
		{Size: 5, Note: []byte("note 5\n"), CreatedAt: at(2 * time.Minute)},
	}
	for _, c := range cps {
		must(t, s.AddAuditCheckpoint(ctx, c))
	}
	wantErr(t, s.AddAuditCheckpoint(ctx, cps[0]), store.ErrConflict)
	latest, err := s.LatestAuditCheckpoint(ctx)
	must(t, err)
	equal(t, "latest checkpoint", latest, cps[1])
	list, err := s.ListAuditCheckpoints(ctx, 0)
	must(t, err)
	equal(t, "checkpoints", list, cps)
	list, err = s.ListAuditCheckpoints(ctx, 4)
	must(t, err)
	equal(t, "checkpoints from 4", list, cps[1:])

	_, err = s.AuditSinkCursor(ctx, "siem")
	wantErr(t, err, store.ErrNotFound)
	must(t, s.SetAuditSinkCursor(ctx, "siem", 3))
	must(t, s.SetAuditSinkCursor(ctx, "siem", 5))
	n, err := s.AuditSinkCursor(ctx, "siem")
	must(t, err)
	equal(t, "cursor", n, int64(5))
	wantErr(t, s.SetAuditSinkCursor(ctx, "", 1), store.ErrInvalid)

	wantErr(t, s.LockAudit(ctx), store.ErrInvalid)
	must(t, s.InTx(ctx, func(tx store.Tx) error { return tx.LockAudit(ctx) }))
}
