package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// The log with a journal (Options.Journal): appends go to the journal
// under l.mu, and the writer goroutine commits them to the database.

// maxPending bounds the journaled records waiting for the database. Past
// it appends wait for the database, and fail after Options.Timeout as they
// do without a journal: the journal must not become the only copy of a
// growing log.
const maxPending = 64 << 10

// journalResetSize is the size from which the journal is emptied once the
// database holds everything in it.
const journalResetSize = 4 << 20

// errBehind reports that the database has not taken journaled records.
var errBehind = errors.New("audit: the database is not taking records")

// openJournal opens the journal and commits the records a crash left in it
// and not in the database, before the log takes new ones.
func (l *Log) openJournal(ctx context.Context) error {
	j, recs, err := openJournal(l.opts.Journal)
	if err != nil {
		return err
	}
	l.journal = j
	l.wake, l.hurry = make(chan struct{}, 1), make(chan struct{}, 1)
	size := l.tree.size
	for len(recs) > 0 && recs[0].Seq < size {
		recs = recs[1:]
	}
	if len(recs) > 0 && recs[0].Seq != size {
		j.Close()
		return fmt.Errorf("%w: the journal %s goes on from record %d, but the database holds records up to %d", ErrTampered, j.path, recs[0].Seq, size)
	}
	for len(recs) > 0 {
		n := min(len(recs), l.opts.MaxBatch)
		req := &request{recs: recs[:n], done: make(chan error, 1)}
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(l.opts.Timeout)
		}
		if err := l.write([]*request{req}, n, false, deadline); err != nil {
			j.Close()
			return fmt.Errorf("audit: open: commit the records left in journal %s: %w", j.path, err)
		}
		recs = recs[n:]
	}
	old, err := j.reset()
	if err != nil {
		j.Close()
		return err
	}
	old.Close()
	l.dbTree, l.next = l.tree.clone(), l.tree.size
	return nil
}

// appendJournaled makes req's records durable in the journal and queues
// them for the database.
func (l *Log) appendJournaled(ctx context.Context, req *request, started time.Time) ([]int64, error) {
	l.mu.Lock()
	for len(l.pending) >= maxPending && !l.closed && l.commitErr == nil {
		l.mu.Unlock()
		if err := l.awaitCommit(ctx, started.Add(l.opts.Timeout)); err != nil {
			return nil, err
		}
		l.mu.Lock()
	}
	var err error
	switch {
	case l.closed:
		err = ErrClosed
	case l.commitErr != nil:
		err = fmt.Errorf("%w: %w", errBehind, l.commitErr)
	}
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	frames := l.frameBuf[:0]
	for i := range req.recs {
		req.recs[i].Seq = l.next + int64(i)
		frames = appendJournalFrame(frames, &req.recs[i])
	}
	err = l.journal.write(frames)
	if cap(frames) <= 2*maxDetailsLen {
		l.frameBuf = frames[:0]
	}
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	req.first = l.next
	l.next += int64(len(req.recs))
	l.pending = append(l.pending, req.recs...)
	urgent := len(l.pending) >= l.opts.MaxBatch/2
	l.mu.Unlock()
	l.signal(urgent || l.requiredSinks)
	return l.delivered(ctx, req, started)
}

// awaitCommit waits for the writer's next commit, at most until deadline.
func (l *Log) awaitCommit(ctx context.Context, deadline time.Time) error {
	l.settledMu.Lock()
	settled := l.settledCh
	l.settledMu.Unlock()
	l.signal(true)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-settled:
		return nil
	case <-l.done:
		return ErrClosed
	case <-timer.C:
		return fmt.Errorf("%w: more than %d records wait for the database", ErrTimeout, maxPending)
	case <-ctx.Done():
		return fmt.Errorf("audit: append: %w", ctx.Err())
	}
}

// signal wakes the writer, and with now tells it not to wait for more
// records.
func (l *Log) signal(now bool) {
	if now {
		select {
		case l.hurry <- struct{}{}:
		default:
		}
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// runJournaled is the writer with a journal: it commits journaled records
// as they come, retries after a failure and signs timed checkpoints.
func (l *Log) runJournaled() {
	defer close(l.done)
	tick := time.NewTicker(min(l.opts.CheckpointInterval, time.Second))
	defer tick.Stop()
	gather := time.NewTimer(l.opts.JournalDelay)
	gather.Stop()
	for {
		select {
		case <-l.wake:
			gather.Reset(l.opts.JournalDelay)
			select {
			case <-gather.C:
			case <-l.hurry:
				gather.Stop()
			case <-l.closing:
				// Closing is seen again at the top of the loop.
				gather.Stop()
			}
			l.drain(false)
			l.faultAhead()
		case <-tick.C:
			l.drain(false)
		case <-l.closing:
			l.mu.Lock()
			l.closed = true
			l.mu.Unlock()
			if err := l.drain(true); err != nil {
				l.err = fmt.Errorf("audit: close: %w; the journal keeps the records for the next start", err)
			}
			if err := l.journal.Close(); err != nil && l.err == nil {
				l.err = fmt.Errorf("audit: close journal: %w", err)
			}
			return
		}
	}
}

// drain commits the records pending when it starts (appenders faster than
// the database must not keep the writer from closing), then a checkpoint
// when one is due (or, on closing, any unsigned records), and empties the
// journal when it has grown and the database holds all of it.
func (l *Log) drain(closing bool) error {
	l.mu.Lock()
	left := len(l.pending)
	l.mu.Unlock()
	for left > 0 {
		l.mu.Lock()
		n := min(left, l.opts.MaxBatch)
		recs := l.pending[:n:n]
		l.mu.Unlock()
		left -= n
		err := l.commitJournaled(recs, false)
		l.mu.Lock()
		l.commitErr = err
		if err == nil {
			l.pending = l.pending[n:]
			if len(l.pending) == 0 {
				l.pending = nil
			}
		}
		l.mu.Unlock()
		if err != nil {
			l.opts.Logger.Error("audit: commit journaled records", "error", err)
			return err
		}
	}
	now := l.opts.Now()
	if l.dbTree.size > l.lastCP && (closing || now.Sub(l.lastCPAt) >= l.opts.CheckpointInterval) {
		if err := l.commitJournaled(nil, true); err != nil {
			l.opts.Logger.Error("audit: timed checkpoint", "error", err)
			return err
		}
	}
	l.mu.Lock()
	if len(l.pending) > 0 || !closing && l.journal.size < journalResetSize {
		l.mu.Unlock()
		return nil
	}
	old, err := l.journal.reset()
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return err
}

// faultAhead readies the journal's next pages for appenders, a step at a
// time, letting them in between. The writer calls it when records have
// come, not on its timer, so that an idle log's journal stays empty; and
// it alone closes the log, so the journal is open here.
func (l *Log) faultAhead() {
	for more := true; more; {
		l.mu.Lock()
		more = l.journal.faultAhead()
		l.mu.Unlock()
	}
}

// commitJournaled hashes recs, which continue the database's tree, and
// commits them, and a checkpoint when one is due or forced.
func (l *Log) commitJournaled(recs []stored, forceCheckpoint bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
	defer cancel()
	now := l.opts.Now()
	tree := l.dbTree.clone()
	rows, _ := l.dbHasher.add(&tree, recs, make([]store.AuditRecord, 0, len(recs)), make([]byte, 0, storedHashBytes(tree.size, len(recs))))
	var cp *store.AuditCheckpoint
	if tree.size > l.lastCP && (forceCheckpoint || l.checkpointDue(tree.size, l.lastCP, now)) {
		c, err := l.sign(&tree, now)
		if err != nil {
			return err
		}
		cp = &c
	}
	var err error
	if cp == nil {
		err = l.st.AppendAudit(ctx, rows)
	} else {
		err = l.st.InTx(ctx, func(tx store.Tx) error {
			if err := tx.AppendAudit(ctx, rows); err != nil {
				return err
			}
			return tx.AddAuditCheckpoint(ctx, *cp)
		})
	}
	if err != nil {
		return l.failed(err, rows)
	}
	l.dbTree = tree
	l.settled(tree.size, rows, cp, now)
	return nil
}

// Flush waits until the database holds every record appended before it
// was called, for readers of the database that must see them. Without a
// journal Append itself waits for that, and Flush returns at once.
func (l *Log) Flush(ctx context.Context) error {
	if l.journal == nil {
		return nil
	}
	l.mu.Lock()
	target := l.next
	l.mu.Unlock()
	l.signal(true)
	for {
		l.settledMu.Lock()
		settled := l.settledCh
		l.settledMu.Unlock()
		if l.size.Load() >= target {
			return nil
		}
		select {
		case <-settled:
		case <-l.done:
			if l.size.Load() >= target {
				return nil
			}
			return fmt.Errorf("audit: flush: %w with %d records in the journal only", ErrClosed, target-l.size.Load())
		case <-ctx.Done():
			l.mu.Lock()
			err := l.commitErr
			l.mu.Unlock()
			if err != nil {
				return fmt.Errorf("audit: flush: %w: %w", errBehind, err)
			}
			return fmt.Errorf("audit: flush: %w", ctx.Err())
		}
	}
}
