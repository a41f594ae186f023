package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/moatproject/moat/internal/store"
)

// When a Log signs a checkpoint unless its Options say otherwise: once
// DefaultCheckpointEvery records follow the last one, DefaultCheckpointInterval
// after the last one if any record is new, and when it closes.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 10 * time.Second
)

// Options tune a Log. Zero values take the defaults.
type Options struct {
	// CheckpointEvery signs a checkpoint once this many records follow the
	// last one (default DefaultCheckpointEvery).
	CheckpointEvery int64
	// CheckpointInterval signs a checkpoint of any new records this long
	// after the last one (default DefaultCheckpointInterval).
	CheckpointInterval time.Duration
	// Timeout bounds an Append, from the call until its records are
	// committed (and accepted by every required sink); default 2 s. Past it
	// Append fails with ErrTimeout, so the caller can fail closed.
	Timeout time.Duration
	// MaxBatch bounds the records committed in one transaction (default
	// 2000).
	MaxBatch int
	// Sinks receive every committed record and checkpoint, in sequence
	// order, after the database. Their names must be unique.
	Sinks []Sink
	// Require names the sinks that must accept a batch for Append to
	// succeed. The others only count their failures (Stats): the database
	// alone decides whether an Append succeeds.
	Require []string
	// SinkQueue bounds the batches waiting for each sink (default 256).
	// A sink that falls further behind catches up from the database.
	SinkQueue int
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Logger receives sink failures (never a record's content).
	Logger *slog.Logger
	// Journal names a file that makes records durable before the database
	// holds them (see journal.go): Append returns once its records are
	// written there, and the writer moves them into the database in
	// batches. Only for a store no other process appends to (SQLite, whose
	// data directory Moat locks), since the log then numbers records
	// without asking the store.
	Journal string
	// JournalDelay is how long journaled records gather before the writer
	// commits them to the database (default 20 ms): appenders do not wait
	// for that commit, and one transaction for many records costs less
	// CPU per record than one for a few. The database, and what reads it,
	// sees a record at most this long after the journal does; Flush, a
	// required sink or a large backlog cuts it short.
	JournalDelay time.Duration
}

func (o *Options) defaults() {
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 2000
	}
	if o.JournalDelay <= 0 {
		o.JournalDelay = 20 * time.Millisecond
	}
	if o.SinkQueue <= 0 {
		o.SinkQueue = 256
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Log is the audit log. Append is safe for concurrent use: an appender
// that finds no commit under way commits its own records, and while one
// is under way the others queue for the writer goroutine, which commits
// all of them in one transaction (group commit). So a lone appender waits
// for no other goroutine to be scheduled, throughput grows with the number
// of appenders, and each Append still returns only after its records are
// committed. With a journal (Options.Journal) an Append returns once its
// records are in the journal, and the writer goroutine commits them.
type Log struct {
	st     store.Store
	signer note.Signer
	hmac   []byte
	opts   Options

	reqs    chan *request
	closing chan struct{}
	done    chan struct{}
	once    sync.Once

	// mu is held by whoever commits: the writer goroutine or an appender
	// committing its own records. It guards the fields below.
	mu       sync.Mutex
	closed   bool // the writer goroutine has finished
	tree     frontier
	spare    []tlog.Hash // storage for the next tree, so a commit need not allocate one
	hasher   hasher
	lastCP   int64
	lastCPAt time.Time
	stale    bool // the store may differ from tree: reload before writing

	// With a journal, these are the next record's seq, the journaled
	// records the database does not hold yet (hashed by the writer, off
	// the appenders' path), the writer's last failure to commit them
	// (appends are refused while it stands) and scratch for the frames of
	// an append.
	journal   *journal
	next      int64
	pending   []stored
	commitErr error
	frameBuf  []byte
	// wake tells the writer that records wait in the journal, hurry that
	// it should not wait for more. dbTree, the tree the database holds,
	// and dbHasher belong to the writer goroutine, as do lastCP and
	// lastCPAt with a journal.
	wake, hurry   chan struct{}
	requiredSinks bool // an append waits for the database: commit at once
	dbTree        frontier
	dbHasher      hasher
	// settledCh is closed, and replaced, each time the database takes
	// records, for Flush.
	settledMu sync.Mutex
	settledCh chan struct{}

	size    atomic.Int64 // committed records, for Stats and the sinks
	cpSize  atomic.Int64 // size of the newest checkpoint
	runners []*sinkRunner
	err     error // from Close
}

// maxConflictRetries bounds how often a batch is rewritten after another
// writer took its sequence numbers.
const maxConflictRetries = 20

// request is one Append waiting for the writer.
type request struct {
	recs  []stored
	state atomic.Int32 // reqPending, reqTaken, reqAbandoned
	first int64        // the first record's seq, once committed
	done  chan error   // buffered: the writer never blocks on it
}

const (
	reqPending int32 = iota
	reqTaken
	reqAbandoned
)

// Open starts a log on st. It loads the right edge of the tree from the
// stored hashes and refuses to start when they disagree with the newest
// checkpoint, or when signer did not sign it (ErrWrongKey).
func Open(ctx context.Context, st store.Store, signer note.Signer, hmacKey []byte, opts Options) (*Log, error) {
	opts.defaults()
	if signer == nil || len(hmacKey) < 16 {
		return nil, errors.New("audit: open: a signer and an HMAC key of at least 16 bytes are required")
	}
	l := &Log{
		st: st, signer: signer, hmac: hmacKey, opts: opts,
		reqs:      make(chan *request, 4096),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		settledCh: make(chan struct{}),
	}
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	if opts.Journal != "" {
		l.requiredSinks = len(opts.Require) > 0
		if err := l.openJournal(ctx); err != nil {
			return nil, err
		}
	}
	required := map[string]bool{}
	for _, name := range opts.Require {
		required[name] = true
	}
	seen := map[string]bool{}
	for _, s := range opts.Sinks {
		name := s.Name()
		if name == "" || seen[name] {
			return nil, fmt.Errorf("audit: open: sink name %q is empty or used twice", name)
		}
		seen[name] = true
		delete(required, name)
	}
	for name := range required {
		return nil, fmt.Errorf("audit: open: required sink %q is not configured", name)
	}
	for _, s := range opts.Sinks {
		r, err := newSinkRunner(ctx, l, s, slices.Contains(opts.Require, s.Name()))
		if err != nil {
			for _, started := range l.runners {
				started.stop(time.Second)
			}
			if l.journal != nil {
				l.journal.Close()
			}
			return nil, err
		}
		l.runners = append(l.runners, r)
	}
	if l.journal != nil {
		go l.runJournaled()
	} else {
		go l.run()
	}
	return l, nil
}

// load reads the log's size, the right edge of its tree and its newest
// checkpoint from the store.
func (l *Log) load(ctx context.Context) error {
	size, err := l.st.AuditSize(ctx)
	if err != nil {
		return fmt.Errorf("audit: open: %w", err)
	}
	tree, err := loadFrontier(ctx, l.st, size)
	if err != nil {
		return fmt.Errorf("audit: open: %w", err)
	}
	l.tree, l.lastCP, l.lastCPAt = tree, 0, l.opts.Now()
	cp, err := l.st.LatestAuditCheckpoint(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("audit: open: %w", err)
	default:
		if err := l.checkNewest(ctx, cp, size); err != nil {
			return err
		}
		l.lastCP = cp.Size
	}
	l.size.Store(size)
	l.cpSize.Store(l.lastCP)
	l.stale = false
	return nil
}

// checkNewest checks that the newest checkpoint was signed by our key and
// that the stored hashes reproduce its root, so that the log is not
// extended from a tree nobody signed.
func (l *Log) checkNewest(ctx context.Context, cp store.AuditCheckpoint, size int64) error {
	_, err := note.Open(cp.Note, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return fmt.Errorf("%w: checkpoint at size %d is not a signed note", ErrTampered, cp.Size)
	}
	n := unverified.Note
	signed := false
	for _, s := range n.UnverifiedSigs {
		signed = signed || (s.Name == l.signer.Name() && s.Hash == l.signer.KeyHash())
	}
	if !signed {
		return fmt.Errorf("%w: the newest checkpoint (size %d) carries no signature of key %s+%08x", ErrWrongKey, cp.Size, l.signer.Name(), l.signer.KeyHash())
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil || tree.N != cp.Size {
		return fmt.Errorf("%w: checkpoint at size %d does not hold a tree of that size", ErrTampered, cp.Size)
	}
	if cp.Size > size {
		return fmt.Errorf("%w: the log holds %d records but its newest checkpoint covers %d (truncated); run moat audit verify", ErrTampered, size, cp.Size)
	}
	at, err := loadFrontier(ctx, l.st, cp.Size)
	if err != nil {
		return fmt.Errorf("audit: open: %w", err)
	}
	if at.root() != tree.Hash {
		return fmt.Errorf("%w: the stored tree hashes do not match the newest checkpoint (size %d); run moat audit verify", ErrTampered, cp.Size)
	}
	return nil
}

// loadFrontier reads the right edge of the tree of size n from the hashes
// stored with the records.
func loadFrontier(ctx context.Context, q store.AuditQueries, n int64) (frontier, error) {
	f := frontier{size: n}
	cache := map[int64][]tlog.Hash{}
	for _, idx := range frontierIndexes(n) {
		seq, pos := hashOwner(idx)
		hs, ok := cache[seq]
		if !ok {
			b, err := q.AuditHashes(ctx, seq)
			if err != nil {
				return frontier{}, err
			}
			if hs, err = splitHashes(seq, b); err != nil {
				return frontier{}, fmt.Errorf("%w: %w", ErrTampered, err)
			}
			cache[seq] = hs
		}
		f.nodes = append(f.nodes, hs[pos])
	}
	return f, nil
}

// HMAC returns the HMAC under the log's key of a value a person supplies,
// in the form the log stores, so they can search the log for it.
func (l *Log) HMAC(value string) string { return hmacValue(l.hmac, value) }

// HMACSum is the raw HMAC-SHA256 under the log's key of domain, a NUL and
// value: a keyed digest for other indexes (the retention subject index),
// whose domain keeps it apart from every value the log itself stores.
func (l *Log) HMACSum(domain, value string) []byte {
	return hmacSum(l.hmac, domain+"\x00"+value)
}

// Append adds records to the log and returns their sequence numbers. It
// returns once they are committed to the database, or written to the
// journal when the log keeps one (and accepted by every required sink,
// which comes after the database), or fails: with ErrTimeout after
// Options.Timeout, with ErrInvalid for a record the log refuses (then
// nothing is appended), or with the store's or the journal's error. A
// caller auditing an action must not perform it when Append fails.
//
// An Append that commits its own records (no commit was under way) runs
// the transaction itself, with the call's deadline: it returns when the
// store gives up at that deadline, and a context cancelled meanwhile does
// not cut the commit short.
func (l *Log) Append(ctx context.Context, recs ...Record) ([]int64, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	if len(recs) > l.opts.MaxBatch {
		return nil, fmt.Errorf("%w: %d records in one append, more than %d", ErrInvalid, len(recs), l.opts.MaxBatch)
	}
	started := time.Now()
	now := l.opts.Now()
	req := &request{recs: make([]stored, len(recs))}
	for i, r := range recs {
		s, err := prepare(l.hmac, r, now)
		if err != nil {
			return nil, fmt.Errorf("audit: append record %d of %d: %w", i+1, len(recs), err)
		}
		req.recs[i] = s
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("audit: append: %w", err)
	}
	if l.journal != nil {
		return l.appendJournaled(ctx, req, started)
	}
	// Only the writer answers on done: a journaled append needs none.
	req.done = make(chan error, 1)
	if len(l.reqs) == 0 && l.mu.TryLock() {
		// No commit is under way and none is queued: commit here instead of
		// waking the writer and waiting to be woken in turn (two goroutine
		// switches, a few microseconds, more on a busy machine). The
		// transaction's deadline is this call's.
		err := l.commitOwn(req, started.Add(l.opts.Timeout))
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return l.delivered(ctx, req, started)
	}
	timer := time.NewTimer(l.opts.Timeout - time.Since(started))
	defer timer.Stop()
	select {
	case l.reqs <- req:
	case <-l.closing:
		return nil, ErrClosed
	case <-timer.C:
		return nil, fmt.Errorf("%w: the writer is busy (after %v)", ErrTimeout, l.opts.Timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("audit: append: %w", ctx.Err())
	}
	var err error
	select {
	case err = <-req.done:
	case <-l.done:
		// The writer drains the queue before it stops: an answer is there
		// unless the request came after it finished.
		select {
		case err = <-req.done:
		default:
			return nil, ErrClosed
		}
	case <-timer.C:
		if req.state.CompareAndSwap(reqPending, reqAbandoned) {
			return nil, fmt.Errorf("%w: not committed within %v", ErrTimeout, l.opts.Timeout)
		}
		return nil, fmt.Errorf("%w: commit not confirmed within %v; the records may be in the log", ErrTimeout, l.opts.Timeout)
	case <-ctx.Done():
		if req.state.CompareAndSwap(reqPending, reqAbandoned) {
			return nil, fmt.Errorf("audit: append: %w", ctx.Err())
		}
		return nil, fmt.Errorf("audit: append: %w; the records may be in the log", ctx.Err())
	}
	if err != nil {
		return nil, err
	}
	return l.delivered(ctx, req, started)
}

// commitOwn commits req, which no one else has seen, with whatever else is
// queued, under l.mu.
func (l *Log) commitOwn(req *request, deadline time.Time) error {
	if l.closed {
		return ErrClosed
	}
	l.commit(req, deadline)
	return <-req.done
}

// delivered waits until every required sink has the committed records of
// req, at most until the call's timeout, and returns their sequence
// numbers.
func (l *Log) delivered(ctx context.Context, req *request, started time.Time) ([]int64, error) {
	end := req.first + int64(len(req.recs))
	var timer *time.Timer
	for _, r := range l.runners {
		if !r.required {
			continue
		}
		if timer == nil {
			timer = time.NewTimer(l.opts.Timeout - time.Since(started))
			defer timer.Stop()
		}
		if err := r.waitDelivered(ctx, end, timer.C); err != nil {
			return nil, err
		}
	}
	seqs := make([]int64, len(req.recs))
	for i := range seqs {
		seqs[i] = req.first + int64(i)
	}
	return seqs, nil
}

// Size is the number of committed records.
func (l *Log) Size() int64 { return l.size.Load() }

// Close commits what is queued, signs a last checkpoint, flushes the
// sinks (waiting at most Options.Timeout for each) and closes them. The
// store stays open: it belongs to the caller.
func (l *Log) Close() error {
	l.once.Do(func() {
		if l.journal != nil {
			// Appends end here, not once the writer has committed what
			// waits, which appenders could otherwise keep growing.
			l.mu.Lock()
			l.closed = true
			l.mu.Unlock()
		}
		close(l.closing)
		<-l.done
		var errs []error
		if l.err != nil {
			errs = append(errs, l.err)
		}
		for _, r := range l.runners {
			errs = append(errs, r.stop(l.opts.Timeout))
		}
		l.err = errors.Join(errs...)
	})
	return l.err
}

// run is the writer: it takes every waiting request into one transaction.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(min(l.opts.CheckpointInterval, time.Second))
	defer tick.Stop()
	for {
		select {
		case req := <-l.reqs:
			l.mu.Lock()
			l.commit(req, time.Now().Add(l.opts.Timeout))
			l.mu.Unlock()
		case <-tick.C:
			l.mu.Lock()
			if l.tree.size > l.lastCP && l.opts.Now().Sub(l.lastCPAt) >= l.opts.CheckpointInterval {
				if err := l.write(nil, 0, true, time.Now().Add(l.opts.Timeout)); err != nil {
					l.opts.Logger.Error("audit: timed checkpoint", "error", err)
				}
			}
			l.mu.Unlock()
		case <-l.closing:
			l.mu.Lock()
			defer l.mu.Unlock()
			// From here on appenders queue (and are answered below) or
			// find the log closed.
			l.closed = true
			for {
				select {
				case req := <-l.reqs:
					l.commit(req, time.Now().Add(l.opts.Timeout))
					continue
				default:
				}
				break
			}
			if l.tree.size > l.lastCP || l.stale {
				if err := l.write(nil, 0, true, time.Now().Add(l.opts.Timeout)); err != nil {
					l.err = fmt.Errorf("audit: close: last checkpoint: %w", err)
				}
			}
			return
		}
	}
}

// commit writes first and every other waiting request in one transaction
// that must end by deadline. The caller holds l.mu.
func (l *Log) commit(first *request, deadline time.Time) {
	var batch []*request
	n := 0
	take := func(r *request) {
		if r.state.CompareAndSwap(reqPending, reqTaken) {
			batch = append(batch, r)
			n += len(r.recs)
		}
	}
	take(first)
	for n < l.opts.MaxBatch {
		select {
		case r := <-l.reqs:
			take(r)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return
	}
	err := l.write(batch, n, false, deadline)
	for try := 0; errors.Is(err, store.ErrConflict) && try < maxConflictRetries; try++ {
		// Another writer appended even after this one had continued from
		// the log's end under the audit lock: one appending a single record
		// in one statement takes no lock. Pause and continue from its tail.
		time.Sleep(time.Duration(rand.Int64N(int64(2 * time.Millisecond))))
		err = l.write(batch, n, false, deadline)
	}
	for _, r := range batch {
		r.done <- err
	}
}

// write commits the batch's records (none for a checkpoint alone) and,
// when one is due or forced, a checkpoint. It appends where this writer
// thinks the log ends; the store refuses records that do not continue the
// log, and then, under the store's audit lock, the writer continues from
// the stored tail, so several writers (nodes sharing Postgres) take turns
// instead of failing, while a lone writer spends no statement on counting.
func (l *Log) write(batch []*request, n int, forceCheckpoint bool, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	now := l.opts.Now()
	if n == 1 && !forceCheckpoint && !l.stale && !l.checkpointDue(l.tree.size+1, l.lastCP, now) {
		// One record and no checkpoint: one statement, which the database
		// commits by itself, without a transaction's own statements.
		tree := l.tree.cloneInto(l.spare)
		rows := l.hashBatch(&tree, batch, n)
		err := l.st.AppendAudit(ctx, rows)
		if err == nil {
			l.committed(tree, l.lastCP, rows, nil, now)
			return nil
		}
		// Either way the store may now differ from the tree: an error may
		// come after the commit, and on a conflict another writer has
		// appended, which the transaction below continues from.
		l.stale = true
		if !errors.Is(err, store.ErrConflict) {
			return l.failed(err, rows)
		}
	}
	var (
		tree   frontier
		lastCP int64
		rows   []store.AuditRecord
		cp     *store.AuditCheckpoint
	)
	err := l.st.InTx(ctx, func(tx store.Tx) error {
		if err := tx.LockAudit(ctx); err != nil {
			return err
		}
		tree, lastCP = l.tree.cloneInto(l.spare), l.lastCP
		// A checkpoint alone (timed, or on closing) stores no record that
		// would show another writer's records or checkpoints: read them.
		reload := l.stale || n == 0
		for {
			if reload {
				var err error
				if tree, lastCP, err = loadTail(ctx, tx); err != nil {
					return err
				}
			}
			rows = l.hashBatch(&tree, batch, n)
			cp = nil
			if tree.size > lastCP && (forceCheckpoint || l.checkpointDue(tree.size, lastCP, now)) {
				c, err := l.sign(&tree, now)
				if err != nil {
					return err
				}
				cp = &c
			}
			err := tx.AppendAudit(ctx, rows)
			if errors.Is(err, store.ErrConflict) && !reload {
				// Another writer appended since this one last did.
				reload = true
				continue
			}
			if err != nil {
				return err
			}
			if cp != nil {
				return tx.AddAuditCheckpoint(ctx, *cp)
			}
			return nil
		}
	})
	if err != nil {
		// A failed commit may still have reached the database (a lost
		// connection after COMMIT): reload before the next batch.
		l.stale = true
		return l.failed(err, rows)
	}
	l.committed(tree, lastCP, rows, cp, now)
	return nil
}

// checkpointDue tells whether a tree of size records needs a checkpoint
// after the one of size lastCP.
func (l *Log) checkpointDue(size, lastCP int64, now time.Time) bool {
	return size-lastCP >= l.opts.CheckpointEvery || now.Sub(l.lastCPAt) >= l.opts.CheckpointInterval
}

// failed wraps the error of a commit of rows.
func (l *Log) failed(err error, rows []store.AuditRecord) error {
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if len(rows) > 0 {
		return fmt.Errorf("audit: append records %d..%d: %w", rows[0].Seq, rows[len(rows)-1].Seq, err)
	}
	return fmt.Errorf("audit: checkpoint: %w", err)
}

// committed makes tree, with the checkpoint of size lastCP, the log's, and
// hands the committed rows and cp (if any) to the sinks.
func (l *Log) committed(tree frontier, lastCP int64, rows []store.AuditRecord, cp *store.AuditCheckpoint, now time.Time) {
	l.spare = l.tree.nodes
	l.tree, l.lastCP, l.stale = tree, lastCP, false
	l.settled(tree.size, rows, cp, now)
}

// settled records that the database holds size records (rows the last of
// them) and checkpoint cp, if any, and hands both to the sinks.
func (l *Log) settled(size int64, rows []store.AuditRecord, cp *store.AuditCheckpoint, now time.Time) {
	l.size.Store(size)
	if l.journal != nil {
		l.settledMu.Lock()
		close(l.settledCh)
		l.settledCh = make(chan struct{})
		l.settledMu.Unlock()
	}
	if cp != nil {
		l.lastCP, l.lastCPAt = cp.Size, now
		l.cpSize.Store(cp.Size)
	}
	if len(l.runners) == 0 {
		return
	}
	lines := make([]Line, 0, len(rows)+1)
	for i := range rows {
		lines = append(lines, Line{Type: LineRecord, Record: &rows[i], Hash: tlog.Hash(rows[i].Hashes[:tlog.HashSize])})
	}
	if cp != nil {
		lines = append(lines, Line{Type: LineCheckpoint, Checkpoint: cp})
	}
	first := size
	if len(rows) > 0 {
		first = rows[0].Seq
	}
	if len(lines) > 0 {
		l.publish(first, size, lines)
	}
}

// loadTail reads the right edge of the stored tree and the size of the
// newest checkpoint (0 without one).
func loadTail(ctx context.Context, q store.AuditQueries) (frontier, int64, error) {
	size, err := q.AuditSize(ctx)
	if err != nil {
		return frontier{}, 0, err
	}
	tree, err := loadFrontier(ctx, q, size)
	if err != nil {
		return frontier{}, 0, err
	}
	c, err := q.LatestAuditCheckpoint(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return tree, 0, nil
	case err != nil:
		return frontier{}, 0, err
	}
	return tree, c.Size, nil
}

// hashBatch numbers the batch's records from tree's size, adds them to
// tree and returns the rows to store, each with its stored hashes.
func (l *Log) hashBatch(tree *frontier, batch []*request, n int) []store.AuditRecord {
	rows := make([]store.AuditRecord, 0, n)
	hashes := make([]byte, 0, storedHashBytes(tree.size, n))
	for _, req := range batch {
		req.first = tree.size
		for i := range req.recs {
			req.recs[i].Seq = tree.size + int64(i)
		}
		rows, hashes = l.hasher.add(tree, req.recs, rows, hashes)
	}
	return rows
}

// storedHashBytes is the size of the stored hashes of n records from seq.
func storedHashBytes(seq int64, n int) int {
	stored := 0
	for end := seq + int64(n); seq < end; seq++ {
		stored += storedCount(seq)
	}
	return stored * tlog.HashSize
}

// hasher adds records to a tree, with scratch for their encodings and
// hashes kept from one batch to the next.
type hasher struct {
	leafBuf []byte      // a record's canonical encoding
	hashBuf []tlog.Hash // the hashes a record completes
}

// add adds recs, numbered from tree's size on, to tree, and appends their
// rows to rows and their stored hashes to hashes, which the rows share. It
// only reads recs: appenders may be copying them meanwhile.
func (h *hasher) add(tree *frontier, recs []stored, rows []store.AuditRecord, hashes []byte) ([]store.AuditRecord, []byte) {
	buf, hs := h.leafBuf, h.hashBuf
	for i := range recs {
		r := &recs[i]
		var leaf tlog.Hash
		leaf, buf = leafHash(buf, r)
		hs = tree.push(leaf, hs[:0])
		start := len(hashes)
		for _, h := range hs {
			hashes = append(hashes, h[:]...)
		}
		rows = append(rows, store.AuditRecord{
			Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Resource: r.Resource, Outcome: r.Outcome,
			Details: r.Details, Hashes: hashes[start:len(hashes):len(hashes)],
		})
	}
	if cap(buf) <= 2*maxDetailsLen {
		h.leafBuf = buf[:0]
	}
	h.hashBuf = hs[:0]
	return rows, hashes
}

// sign makes the checkpoint of tree.
func (l *Log) sign(tree *frontier, now time.Time) (store.AuditCheckpoint, error) {
	text := tlog.FormatTree(tlog.Tree{N: tree.size, Hash: tree.root()})
	msg, err := note.Sign(&note.Note{Text: string(text)}, l.signer)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("audit: sign checkpoint at size %d: %w", tree.size, err)
	}
	return store.AuditCheckpoint{Size: tree.size, Note: msg, CreatedAt: now.UTC()}, nil
}

// publish hands committed lines (records first..end-1, then perhaps a
// checkpoint of size end) to the sinks without waiting for them.
func (l *Log) publish(first, end int64, lines []Line) {
	for _, r := range l.runners {
		r.offer(sinkBatch{first: first, end: end, lines: lines})
	}
}
