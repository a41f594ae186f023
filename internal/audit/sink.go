package audit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/moatproject/moat/internal/store"
)

// Sink is a secondary copy of the log: a file, a SIEM's webhook. The
// database is always the primary. A sink receives every committed record
// and checkpoint once or more (at least once), in sequence order, in
// batches; a checkpoint follows the record that completes it. Each time
// delivery starts after record 0 (a new sink, a restart) the stream begins
// with a frontier line of the records before it.
//
// Delivery, retries and ordering are the Log's: Write is called by one
// goroutine per sink, again with the same lines after it fails (with
// exponential backoff and jitter), and must return when ctx is done.
// Where a sink has got to is kept in the database (audit_sink_cursors), so
// after a restart it resumes where it was; a sink seen for the first time
// starts at the log's end.
type Sink interface {
	Name() string
	Write(ctx context.Context, lines []Line) error
	Close() error
}

// SinkStats describe one sink.
type SinkStats struct {
	Name     string
	Required bool
	Next     int64 // the next record it has yet to receive
	Failures int64 // failed writes
	Dropped  int64 // batches it was too far behind to queue (re-read from the database)
}

// Stats describe a log.
type Stats struct {
	Size  int64
	Sinks []SinkStats
}

// Stats reports the log's size and each sink's progress and failures; a
// sink whose Failures grow is one to alert on.
func (l *Log) Stats() Stats {
	s := Stats{Size: l.size.Load()}
	for _, r := range l.runners {
		s.Sinks = append(s.Sinks, SinkStats{
			Name: r.name, Required: r.required, Next: r.delivered.Load(),
			Failures: r.failures.Load(), Dropped: r.dropped.Load(),
		})
	}
	return s
}

// sinkBatch is what the writer committed: records first..end-1 and, when
// its last line is one, the checkpoint of size end.
type sinkBatch struct {
	first, end int64
	lines      []Line
}

// Retry pacing of a failing sink.
const (
	sinkRetryMin = 100 * time.Millisecond
	sinkRetryMax = 30 * time.Second
	// cursorEvery spaces the writes of a sink's cursor to the database.
	cursorEvery = time.Second
	// catchUpPage is how many records a lagging sink reads at a time.
	catchUpPage = 1000
)

type sinkRunner struct {
	log      *Log
	sink     Sink
	name     string
	required bool
	in       chan sinkBatch

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the runner goroutine.
	next     int64 // next record to deliver
	cpSent   int64 // size of the last checkpoint delivered
	cursorAt time.Time

	delivered   atomic.Int64
	cpDelivered atomic.Int64
	failures    atomic.Int64
	dropped     atomic.Int64
	mu          sync.Mutex
	advanced    chan struct{} // closed when delivered grows
}

func newSinkRunner(ctx context.Context, l *Log, s Sink, required bool) (*sinkRunner, error) {
	name := s.Name()
	next, err := l.st.AuditSinkCursor(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		next = l.size.Load()
		err = l.st.SetAuditSinkCursor(ctx, name, next)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: sink %s: %w", name, err)
	}
	r := &sinkRunner{
		log: l, sink: s, name: name, required: required,
		in:       make(chan sinkBatch, l.opts.SinkQueue),
		done:     make(chan struct{}),
		next:     next,
		cpSent:   next,
		advanced: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.delivered.Store(next)
	r.cpDelivered.Store(next)
	go r.run()
	return r, nil
}

// offer queues a committed batch; a full queue drops it, and the runner
// reads what it missed from the database.
func (r *sinkRunner) offer(b sinkBatch) {
	select {
	case r.in <- b:
	default:
		r.dropped.Add(1)
	}
}

// waitDelivered waits until the sink has received the records before end.
func (r *sinkRunner) waitDelivered(ctx context.Context, end int64, deadline <-chan time.Time) error {
	for {
		r.mu.Lock()
		ch := r.advanced
		r.mu.Unlock()
		if r.delivered.Load() >= end {
			return nil
		}
		select {
		case <-ch:
		case <-deadline:
			return fmt.Errorf("%w: sink %s has not accepted records before %d (they are in the database)", ErrSink, r.name, end)
		case <-ctx.Done():
			return fmt.Errorf("%w: sink %s: %w", ErrSink, r.name, ctx.Err())
		case <-r.done:
			return fmt.Errorf("%w: sink %s stopped", ErrSink, r.name)
		}
	}
}

func (r *sinkRunner) run() {
	defer close(r.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// A stream that resumes after record 0 starts with the tree before it,
	// so that what the sink keeps verifies on its own (and a file sink can
	// tell records it already has).
	for r.next > 0 {
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		f, err := loadFrontier(ctx, r.log.st, r.next)
		cancel()
		if err == nil {
			if !r.deliver([]Line{{Type: LineFrontier, Size: r.next, Hashes: f.nodes}}) {
				return
			}
			break
		}
		r.failures.Add(1)
		r.log.opts.Logger.Error("audit: sink start", "sink", r.name, "error", err)
		if !r.sleep(sinkRetryMin) {
			return
		}
	}
	for {
		var b sinkBatch
		select {
		case b = <-r.in:
		case <-tick.C:
			// Catch up with what the queue dropped.
			b = sinkBatch{first: r.log.size.Load(), end: r.log.size.Load()}
		case <-r.ctx.Done():
			return
		}
		// Merge what else is queued into one delivery.
		lines, ok := r.pending(b, nil)
	merge:
		for ok && len(lines) < r.log.opts.MaxBatch {
			select {
			case more := <-r.in:
				lines, ok = r.pending(more, lines)
			default:
				break merge
			}
		}
		if !ok || (len(lines) > 0 && !r.deliver(lines)) {
			return
		}
		r.saveCursor(false)
	}
}

// pending appends to acc the lines of b the sink has not had, first
// reading from the database any records between what it had and b. acc
// always holds exactly the lines after the last delivery, so delivering
// it (when it grows large) keeps the order. It reports false when the
// runner is stopped.
func (r *sinkRunner) pending(b sinkBatch, acc []Line) ([]Line, bool) {
	for r.next < b.first {
		got, err := r.catchUp(b.first)
		if err != nil {
			r.failures.Add(1)
			r.log.opts.Logger.Error("audit: sink catch-up", "sink", r.name, "error", err)
			if !r.sleep(sinkRetryMin) {
				return nil, false
			}
			continue
		}
		acc = append(acc, got...)
		if len(acc) >= r.log.opts.MaxBatch {
			if !r.deliver(acc) {
				return nil, false
			}
			acc = nil
		}
	}
	for _, ln := range b.lines {
		switch ln.Type {
		case LineRecord:
			if ln.Record.Seq < r.next {
				continue
			}
			r.next = ln.Record.Seq + 1
		case LineCheckpoint:
			if ln.Checkpoint.Size <= r.cpSent {
				continue
			}
			r.cpSent = ln.Checkpoint.Size
		}
		acc = append(acc, ln)
	}
	return acc, true
}

// catchUp reads records r.next..until-1 (at most a page) and the
// checkpoints among them from the database.
func (r *sinkRunner) catchUp(until int64) ([]Line, error) {
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	recs, err := r.log.st.ListAudit(ctx, r.next, int(min(until-r.next, catchUpPage)))
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 || recs[0].Seq != r.next {
		return nil, fmt.Errorf("record %d is missing from the database", r.next)
	}
	cps, err := r.log.st.ListAuditCheckpoints(ctx, r.cpSent+1)
	if err != nil {
		return nil, err
	}
	var lines []Line
	for i := range recs {
		rec := &recs[i]
		if rec.Seq != r.next || len(rec.Hashes) < tlog.HashSize {
			return nil, fmt.Errorf("record %d is missing from the database", r.next)
		}
		lines = append(lines, Line{Type: LineRecord, Record: rec, Hash: tlog.Hash(rec.Hashes[:tlog.HashSize])})
		r.next++
		for len(cps) > 0 && cps[0].Size <= r.next {
			if cps[0].Size == r.next {
				lines = append(lines, Line{Type: LineCheckpoint, Checkpoint: &cps[0]})
				r.cpSent = cps[0].Size
			}
			cps = cps[1:]
		}
	}
	return lines, nil
}

// deliver writes lines until the sink accepts them, backing off between
// failures; it reports false when the runner is stopped first.
func (r *sinkRunner) deliver(lines []Line) bool {
	wait := sinkRetryMin
	for {
		err := r.sink.Write(r.ctx, lines)
		if err == nil {
			break
		}
		if r.ctx.Err() != nil {
			return false
		}
		r.failures.Add(1)
		r.log.opts.Logger.Error("audit: sink write failed", "sink", r.name, "lines", len(lines), "error", err)
		// Full jitter keeps many nodes from retrying in step.
		if !r.sleep(wait/2 + rand.N(wait/2+1)) {
			return false
		}
		wait = min(2*wait, sinkRetryMax)
	}
	r.delivered.Store(r.next)
	r.cpDelivered.Store(r.cpSent)
	r.mu.Lock()
	close(r.advanced)
	r.advanced = make(chan struct{})
	r.mu.Unlock()
	return true
}

func (r *sinkRunner) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// saveCursor records how far the sink got, at most once a second unless
// forced: a cursor behind the truth only means records sent again.
func (r *sinkRunner) saveCursor(force bool) {
	now := time.Now()
	if !force && now.Sub(r.cursorAt) < cursorEvery {
		return
	}
	r.cursorAt = now
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.log.st.SetAuditSinkCursor(ctx, r.name, r.delivered.Load()); err != nil {
		r.log.opts.Logger.Error("audit: save sink cursor", "sink", r.name, "error", err)
	}
}

// stop lets the sink finish what is queued for up to timeout, then
// cancels it, saves its cursor and closes it.
func (r *sinkRunner) stop(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	behind := func() bool {
		return r.delivered.Load() < r.log.size.Load() || r.cpDelivered.Load() < r.log.cpSize.Load()
	}
	for behind() && time.Now().Before(deadline) {
		select {
		case r.in <- sinkBatch{first: r.log.size.Load(), end: r.log.size.Load()}:
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.cancel()
	var err error
	select {
	case <-r.done:
	case <-time.After(timeout):
		err = fmt.Errorf("audit: sink %s did not stop within %v", r.name, timeout)
	}
	r.saveCursor(true)
	if r.delivered.Load() < r.log.size.Load() {
		err = errors.Join(err, fmt.Errorf("audit: sink %s stopped at record %d of %d; it resumes there", r.name, r.delivered.Load(), r.log.size.Load()))
	}
	if cerr := r.sink.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("audit: close sink %s: %w", r.name, cerr))
	}
	return err
}
