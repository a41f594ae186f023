package store

import (
	"context"
	"time"
)

// AuditQueries keep the tamper-evident audit log (package audit): its
// records with the Merkle tree hashes each one completes, its signed
// checkpoints, and how far each secondary sink has received the log.
//
// The store only keeps rows; it neither hashes nor signs. Verification
// recomputes everything from the records, so nothing here is trusted.
type AuditQueries interface {
	// LockAudit makes other transactions that call it wait until this one
	// ends, so that writers on several nodes append in turn. Outside a
	// transaction it fails with ErrInvalid.
	LockAudit(ctx context.Context) error
	// AppendAudit adds records that continue the log densely: the first
	// Seq must equal AuditSize and each next one be one more. Otherwise it
	// fails with ErrConflict (another writer got there first) or ErrInvalid
	// (a batch with a gap), and adds nothing; a transaction it fails in
	// that way stays usable, so a writer can skip counting the records
	// before it appends and count them only after a conflict.
	AppendAudit(ctx context.Context, recs []AuditRecord) error
	// AuditSize is the number of records, which is one more than the
	// highest Seq (0 for an empty log).
	AuditSize(ctx context.Context) (int64, error)
	// ListAudit returns up to limit records (1..10,000) with Seq >= from,
	// in Seq order, with their Hashes.
	ListAudit(ctx context.Context, from int64, limit int) ([]AuditRecord, error)
	// AuditHashes returns the tree hashes stored with record seq
	// (ErrNotFound when there is no such record).
	AuditHashes(ctx context.Context, seq int64) ([]byte, error)

	// AddAuditCheckpoint stores a signed checkpoint; ErrConflict when one of
	// that size exists.
	AddAuditCheckpoint(ctx context.Context, c AuditCheckpoint) error
	// ListAuditCheckpoints lists the checkpoints with Size >= minSize by
	// Size.
	ListAuditCheckpoints(ctx context.Context, minSize int64) ([]AuditCheckpoint, error)
	// LatestAuditCheckpoint returns the checkpoint of the largest size
	// (ErrNotFound when there is none).
	LatestAuditCheckpoint(ctx context.Context) (AuditCheckpoint, error)

	// AuditSinkCursor is the next Seq the named sink has yet to receive
	// (ErrNotFound for a sink never seen); SetAuditSinkCursor records it.
	AuditSinkCursor(ctx context.Context, sink string) (int64, error)
	SetAuditSinkCursor(ctx context.Context, sink string, next int64) error
}

// AuditRecord is one audit record as stored. Details is the canonical JSON
// object the record was hashed with; sensitive values in it are HMACs.
type AuditRecord struct {
	Seq      int64
	Time     time.Time
	Actor    string
	Action   string
	Resource string
	Outcome  string
	Details  []byte
	// Hashes are the tree hashes this record completes, 32 bytes each, in
	// the order of golang.org/x/mod/sumdb/tlog.StoredHashes: its leaf hash
	// first.
	Hashes []byte
}

// AuditCheckpoint is a signed tree head: a sumdb note whose text is
// tlog.FormatTree of the tree of the first Size records.
type AuditCheckpoint struct {
	Size      int64
	Note      []byte
	CreatedAt time.Time
}
