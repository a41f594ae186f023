package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Kinds of tampering Verify names.
const (
	KindModified   = "modified"   // a record differs from what was hashed
	KindMissing    = "missing"    // a sequence number is skipped (deleted, or moved later)
	KindInserted   = "inserted"   // a sequence number appears again (added, or moved earlier)
	KindTruncated  = "truncated"  // the log ends before its newest checkpoint
	KindCheckpoint = "checkpoint" // a checkpoint is unsigned, malformed, or signs another tree
	KindMalformed  = "malformed"  // a line of an export does not parse
)

// TamperError names the first record that fails verification. Seq is -1
// when the fault lies in a checkpoint alone; Checkpoint then names its
// size.
type TamperError struct {
	Seq        int64
	Checkpoint int64
	Kind       string
	Reason     string
}

func (e *TamperError) Error() string {
	if e.Seq < 0 {
		return fmt.Sprintf("audit: checkpoint at size %d: %s: %s", e.Checkpoint, e.Kind, e.Reason)
	}
	return fmt.Sprintf("audit: record %d: %s: %s", e.Seq, e.Kind, e.Reason)
}

func (e *TamperError) Unwrap() error { return ErrTampered }

// Report says what Verify checked.
type Report struct {
	From        int64 // first record checked (above 0 for an export made with --since)
	Records     int64 // records checked
	Checkpoints int   // checkpoints whose signature and root were checked
	// Covered is the size of the newest checkpoint checked: records from
	// Covered on are hashed but no signature vouches for them yet (the log
	// signs one every N records, T seconds, and on shutdown).
	Covered int64
}

// VerifyOptions add what a source alone cannot show.
type VerifyOptions struct {
	// Checkpoints are signed notes kept outside the source (a file sink, a
	// witness, an earlier export). They are checked like the source's
	// own, so a source truncated together with its checkpoints, or
	// rewritten from some point and re-signed by a stolen key, fails.
	Checkpoints [][]byte
}

// pendingCP is a checkpoint waiting for the tree to reach its size.
type pendingCP struct {
	size int64
	root tlog.Hash
}

type verifier struct {
	key     note.Verifier
	tree    frontier
	pending []pendingCP // by size
	good    int64       // size of the newest checkpoint that matched
	rep     Report
	started bool
	buf     []byte
	stored  []tlog.Hash
}

// Verify checks a log offline: it recomputes every record's leaf hash and
// the tree, checks each checkpoint's signature with key and that its root
// is the recomputed root at its size (which makes checkpoints consistent
// with each other), and that the log reaches its newest checkpoint. It
// returns a *TamperError (errors.Is ErrTampered) naming the first record
// that fails, or another error when the source cannot be read.
//
// Where the source holds the hashes stored with each record (the database,
// or an export's per-record hash), a record that differs from its hash is
// named exactly; a forger who also rewrote the hashes is caught by the
// next checkpoint, and the error then names the first record after the
// last checkpoint that matched.
func Verify(ctx context.Context, src Source, key note.Verifier, opts VerifyOptions) (Report, error) {
	defer src.close()
	v := &verifier{key: key}
	for i, msg := range opts.Checkpoints {
		if err := v.checkpoint(msg, -1); err != nil {
			var te *TamperError
			if errors.As(err, &te) {
				te.Reason = fmt.Sprintf("outside checkpoint %d: %s", i+1, te.Reason)
			}
			return v.rep, err
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return v.rep, err
		}
		l, err := src.next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		var le *LineError
		if errors.As(err, &le) {
			return v.rep, &TamperError{Seq: v.tree.size, Kind: KindMalformed, Reason: le.Error()}
		}
		if err != nil {
			return v.rep, err
		}
		switch l.Type {
		case LineFrontier:
			if v.started {
				// A sink's stream repeats the frontier where it resumed; it
				// must be the tree of the records before it.
				if l.Size != v.tree.size || fmt.Sprint(l.Hashes) != fmt.Sprint(v.tree.nodes) {
					return v.rep, &TamperError{Seq: v.tree.size, Kind: KindMalformed, Reason: fmt.Sprintf(
						"a frontier of %d records does not match the %d records before it", l.Size, v.tree.size)}
				}
				continue
			}
			v.tree = frontier{size: l.Size, nodes: append([]tlog.Hash(nil), l.Hashes...)}
			v.rep.From, v.good = l.Size, l.Size
			// Outside checkpoints of the records before the export cannot
			// be checked; one of exactly its start checks the frontier.
			for len(v.pending) > 0 && v.pending[0].size <= l.Size {
				if v.pending[0].size == l.Size {
					if err := v.matchRoot(l.Size, v.pending[0].root); err != nil {
						return v.rep, err
					}
				}
				v.pending = v.pending[1:]
			}
		case LineCheckpoint:
			if err := v.checkpoint(l.Checkpoint.Note, l.Checkpoint.Size); err != nil {
				return v.rep, err
			}
		case LineRecord:
			if err := v.record(&l); err != nil {
				return v.rep, err
			}
		}
		v.started = true
	}
	if len(v.pending) > 0 {
		return v.rep, &TamperError{Seq: v.tree.size, Kind: KindTruncated, Reason: fmt.Sprintf(
			"the log ends after %d records but a checkpoint covers %d", v.tree.size, v.pending[len(v.pending)-1].size)}
	}
	return v.rep, nil
}

// checkpoint checks a signed note and queues it for the tree to reach its
// size; size is the size its line or row claims, -1 when none.
func (v *verifier) checkpoint(msg []byte, size int64) error {
	bad := func(n int64, format string, args ...any) error {
		return &TamperError{Seq: -1, Checkpoint: n, Kind: KindCheckpoint, Reason: fmt.Sprintf(format, args...)}
	}
	n, err := note.Open(msg, note.VerifierList(v.key))
	if err != nil {
		return bad(size, "its signature does not verify with key %s+%08x", v.key.Name(), v.key.KeyHash())
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return bad(size, "the signed text is not a tree head")
	}
	if size >= 0 && tree.N != size {
		return bad(size, "it is stored as size %d but signs a tree of %d records", size, tree.N)
	}
	switch {
	case tree.N < v.tree.size:
		return bad(tree.N, "it comes after record %d, past the record that completes it", v.tree.size-1)
	case tree.N == v.tree.size && v.started:
		return v.matchRoot(tree.N, tree.Hash)
	case tree.N == v.tree.size && tree.N == v.rep.From:
		// Before any record: at 0 the empty tree, at an export's start
		// the frontier, which this checkpoint authenticates.
		return v.matchRoot(tree.N, tree.Hash)
	}
	i := sort.Search(len(v.pending), func(i int) bool { return v.pending[i].size >= tree.N })
	if i < len(v.pending) && v.pending[i].size == tree.N {
		if v.pending[i].root != tree.Hash {
			return bad(tree.N, "two checkpoints sign different trees of this size (a forked log)")
		}
		return nil
	}
	v.pending = append(v.pending, pendingCP{})
	copy(v.pending[i+1:], v.pending[i:])
	v.pending[i] = pendingCP{size: tree.N, root: tree.Hash}
	return nil
}

// matchRoot compares a checkpoint's root with the tree's.
func (v *verifier) matchRoot(size int64, root tlog.Hash) error {
	if v.tree.root() != root {
		from := v.good
		return &TamperError{Seq: from, Kind: KindModified, Reason: fmt.Sprintf(
			"records %d..%d do not hash to the root the checkpoint at size %d signed", from, size-1, size)}
	}
	v.good = size
	v.rep.Checkpoints++
	v.rep.Covered = size
	return nil
}

// record checks one record's place and hashes and adds it to the tree.
func (v *verifier) record(l *Line) error {
	r := l.Record
	want := v.tree.size
	switch {
	case r.Seq > want:
		return &TamperError{Seq: want, Kind: KindMissing, Reason: fmt.Sprintf("record %d follows record %d", r.Seq, want-1)}
	case r.Seq < want:
		return &TamperError{Seq: r.Seq, Kind: KindInserted, Reason: fmt.Sprintf("record %d appears again after record %d", r.Seq, want-1)}
	}
	s := stored{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Resource: r.Resource, Outcome: r.Outcome, Details: r.Details}
	var leaf tlog.Hash
	leaf, v.buf = leafHash(v.buf, &s)
	v.stored = v.tree.push(leaf, v.stored[:0])
	if r.Hashes != nil {
		// From the database: every hash the record stores.
		if len(r.Hashes) != len(v.stored)*tlog.HashSize {
			return &TamperError{Seq: r.Seq, Kind: KindModified, Reason: fmt.Sprintf("it stores %d bytes of tree hashes, want %d", len(r.Hashes), len(v.stored)*tlog.HashSize)}
		}
		for i, h := range v.stored {
			if !bytes.Equal(h[:], r.Hashes[i*tlog.HashSize:(i+1)*tlog.HashSize]) {
				what := "its content does not match the leaf hash stored with it"
				if i > 0 {
					what = fmt.Sprintf("tree hash %d stored with it does not match the records before it", i)
				}
				return &TamperError{Seq: r.Seq, Kind: KindModified, Reason: what}
			}
		}
	} else if leaf != l.Hash {
		return &TamperError{Seq: r.Seq, Kind: KindModified, Reason: "its content does not match its hash"}
	}
	v.rep.Records++
	for len(v.pending) > 0 && v.pending[0].size <= v.tree.size {
		if err := v.matchRoot(v.pending[0].size, v.pending[0].root); err != nil {
			return err
		}
		v.pending = v.pending[1:]
	}
	return nil
}
