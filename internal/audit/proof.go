package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/moatproject/moat/internal/store"
)

// ErrNotCovered reports a record that no checkpoint covers yet.
var ErrNotCovered = errors.New("audit: record not covered by a checkpoint yet")

// Proof shows that one record is in the log a signed checkpoint commits
// to: anyone holding the verifier key checks it with CheckProof, without
// the log.
type Proof struct {
	// Record is the record as an export line (its hash is the leaf hash).
	Record json.RawMessage `json:"record"`
	// Checkpoint is the signed note of the tree the proof is against.
	Checkpoint string `json:"checkpoint"`
	// Proof is the RFC 6962 inclusion proof (tlog.RecordProof), base64.
	Proof []string `json:"proof"`
}

// Prove returns the inclusion proof of record seq against the newest
// checkpoint.
func Prove(ctx context.Context, q store.AuditQueries, seq int64) (Proof, error) {
	cp, err := q.LatestAuditCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return Proof{}, fmt.Errorf("%w: the log has no checkpoint", ErrNotCovered)
	}
	if err != nil {
		return Proof{}, fmt.Errorf("audit: prove record %d: %w", seq, err)
	}
	if seq < 0 || seq >= cp.Size {
		return Proof{}, fmt.Errorf("%w: record %d, newest checkpoint covers %d records", ErrNotCovered, seq, cp.Size)
	}
	recs, err := q.ListAudit(ctx, seq, 1)
	if err != nil {
		return Proof{}, fmt.Errorf("audit: prove record %d: %w", seq, err)
	}
	if len(recs) == 0 || recs[0].Seq != seq || len(recs[0].Hashes) < tlog.HashSize {
		return Proof{}, fmt.Errorf("%w: record %d is missing", ErrTampered, seq)
	}
	line := Line{Type: LineRecord, Record: &recs[0], Hash: tlog.Hash(recs[0].Hashes[:tlog.HashSize])}
	rec, err := line.AppendJSON(nil)
	if err != nil {
		return Proof{}, err
	}
	cache := map[int64][]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, idx := range indexes {
			owner, pos := hashOwner(idx)
			hs, ok := cache[owner]
			if !ok {
				b, err := q.AuditHashes(ctx, owner)
				if err != nil {
					return nil, err
				}
				if hs, err = splitHashes(owner, b); err != nil {
					return nil, fmt.Errorf("%w: %w", ErrTampered, err)
				}
				cache[owner] = hs
			}
			out[i] = hs[pos]
		}
		return out, nil
	})
	p, err := tlog.ProveRecord(cp.Size, seq, reader)
	if err != nil {
		return Proof{}, fmt.Errorf("audit: prove record %d: %w", seq, err)
	}
	out := Proof{Record: json.RawMessage(rec[:len(rec)-1]), Checkpoint: string(cp.Note), Proof: make([]string, len(p))}
	for i, h := range p {
		out.Proof[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out, nil
}

// CheckProof verifies a proof with the log's verifier key: the checkpoint's
// signature, the record's leaf hash recomputed from its fields, and the
// path from that leaf to the signed root. It returns the record.
func CheckProof(p Proof, key note.Verifier) (store.AuditRecord, error) {
	l, err := ParseLine(p.Record)
	if err != nil || l.Type != LineRecord {
		return store.AuditRecord{}, fmt.Errorf("audit: check proof: the record is not a record line: %w", err)
	}
	r := l.Record
	s := stored{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Resource: r.Resource, Outcome: r.Outcome, Details: r.Details}
	leaf, _ := leafHash(nil, &s)
	if leaf != l.Hash {
		return store.AuditRecord{}, fmt.Errorf("%w: record %d does not match its hash", ErrTampered, r.Seq)
	}
	n, err := note.Open([]byte(p.Checkpoint), note.VerifierList(key))
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("%w: the checkpoint's signature does not verify", ErrTampered)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("%w: the checkpoint is not a tree head", ErrTampered)
	}
	proof := make(tlog.RecordProof, len(p.Proof))
	for i, s := range p.Proof {
		if proof[i], err = parseHash(s); err != nil {
			return store.AuditRecord{}, fmt.Errorf("audit: check proof: hash %d: %w", i, err)
		}
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, r.Seq, leaf); err != nil {
		return store.AuditRecord{}, fmt.Errorf("%w: record %d is not in the tree of %d records: %w", ErrTampered, r.Seq, tree.N, err)
	}
	return *r, nil
}
