package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/moatproject/moat/internal/store"
)

// Source yields a log's lines in export order for Verify and Export:
// StoreSource reads the database, FileSource an export or a file sink.
type Source interface {
	// next returns the next line, or io.EOF after the last.
	next(ctx context.Context) (Line, error)
	// close stops any reading ahead.
	close()
}

// storePage is how many records a StoreSource reads at a time.
const storePage = 10_000

type storeSource struct {
	q     store.AuditQueries
	since int64

	started bool
	queue   []Line // lines ready to return
	cps     []store.AuditCheckpoint
	pages   chan chan pageResult // in order
	last    int64                // seq of the last record returned, -1 before any
	cancel  context.CancelFunc
}

func (s *storeSource) close() {
	if s.cancel != nil {
		s.cancel()
	}
}

type pageResult struct {
	recs []store.AuditRecord
	err  error
}

// StoreSource reads the log from the database, from record since on. When
// since is above 0 it starts with the frontier of the tree of the records
// before it, read from the stored hashes. Records carry every stored hash,
// so Verify compares them too.
func StoreSource(q store.AuditQueries, since int64) Source {
	return &storeSource{q: q, since: max(since, 0), last: -1}
}

func (s *storeSource) start(ctx context.Context) error {
	s.started = true
	var err error
	if s.cps, err = s.q.ListAuditCheckpoints(ctx, max(s.since, 1)); err != nil {
		return fmt.Errorf("audit: read checkpoints: %w", err)
	}
	if s.since > 0 {
		f, err := loadFrontier(ctx, s.q, s.since)
		if err != nil {
			return fmt.Errorf("audit: read the tree before record %d: %w", s.since, err)
		}
		s.queue = append(s.queue, Line{Type: LineFrontier, Size: s.since, Hashes: f.nodes})
		s.flushCheckpoints(s.since)
	}
	// Read ahead, several pages at once on the read pool's connections:
	// reading rows costs more than hashing them. Page i asks for the
	// records from since+i*storePage on; with no gaps it holds exactly
	// its range, and with gaps it overlaps the next, whose repeats next
	// skips. The first short page holds everything left.
	pctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	readers := max(2, runtime.GOMAXPROCS(0))
	pages := make(chan chan pageResult, readers)
	s.pages = pages
	since := s.since
	go func() {
		defer close(pages)
		sem := make(chan struct{}, readers)
		for from := since; ; from += storePage {
			ch := make(chan pageResult, 1)
			select {
			case pages <- ch:
			case <-pctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-pctx.Done():
				return
			}
			go func() {
				defer func() { <-sem }()
				recs, err := s.q.ListAudit(pctx, from, storePage)
				ch <- pageResult{recs, err}
			}()
		}
	}()
	return nil
}

// flushCheckpoints queues the checkpoints of size up to n.
func (s *storeSource) flushCheckpoints(n int64) {
	for len(s.cps) > 0 && s.cps[0].Size <= n {
		s.queue = append(s.queue, Line{Type: LineCheckpoint, Checkpoint: &s.cps[0]})
		s.cps = s.cps[1:]
	}
}

func (s *storeSource) next(ctx context.Context) (Line, error) {
	if !s.started {
		if err := s.start(ctx); err != nil {
			return Line{}, err
		}
	}
	for len(s.queue) == 0 {
		if s.pages == nil {
			// Checkpoints beyond the last record come last.
			if len(s.cps) > 0 {
				s.flushCheckpoints(s.cps[len(s.cps)-1].Size)
				continue
			}
			return Line{}, io.EOF
		}
		ch, ok := <-s.pages
		if !ok {
			// Reading ahead stopped early: the context ended.
			s.pages = nil
			if err := ctx.Err(); err != nil {
				return Line{}, err
			}
			return Line{}, errors.New("audit: read records: stopped")
		}
		page := <-ch
		if page.err != nil {
			s.cancel()
			return Line{}, fmt.Errorf("audit: read records: %w", page.err)
		}
		if len(page.recs) < storePage {
			// The last page: stop reading ahead.
			s.cancel()
			s.pages = nil
		}
		for i := range page.recs {
			r := &page.recs[i]
			if r.Seq <= s.last {
				continue // already returned with the page before
			}
			s.last = r.Seq
			if r.Hashes == nil {
				r.Hashes = []byte{}
			}
			var leaf tlog.Hash
			copy(leaf[:], r.Hashes)
			s.queue = append(s.queue, Line{Type: LineRecord, Record: r, Hash: leaf})
			s.flushCheckpoints(r.Seq + 1)
		}
	}
	l := s.queue[0]
	s.queue = s.queue[1:]
	return l, nil
}

// fileChunk is how many lines a FileSource parses as one piece of work.
const fileChunk = 2000

type fileSource struct {
	r       io.Reader
	started bool
	chunks  chan chan chunkResult // in file order
	stop    chan struct{}
	cur     chunkResult
}

type chunkResult struct {
	lines []Line
	err   error // after lines
}

// FileSource reads an export (or a file sink's file) line by line. Lines
// are parsed on every core, in chunks, and returned in file order.
func FileSource(r io.Reader) Source {
	return &fileSource{r: r, stop: make(chan struct{})}
}

// LineError reports an export line that does not parse.
type LineError struct {
	Line int // from 1
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("audit: line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

type chunkJob struct {
	first int // line number of raw[0]
	raw   [][]byte
	out   chan chunkResult
}

func (s *fileSource) start() {
	s.started = true
	workers := max(1, runtime.GOMAXPROCS(0))
	s.chunks = make(chan chan chunkResult, 2*workers)
	jobs := make(chan chunkJob, workers)
	for range workers {
		go func() {
			for j := range jobs {
				j.out <- parseChunk(j)
			}
		}()
	}
	go func() {
		defer close(s.chunks)
		defer close(jobs)
		sc := bufio.NewScanner(s.r)
		sc.Buffer(make([]byte, 64<<10), maxLine+1)
		line := 0
		job := chunkJob{first: 1}
		send := func(j chunkJob, ready chan chunkResult) bool {
			select {
			case s.chunks <- ready:
			case <-s.stop:
				return false
			}
			if j.out != nil {
				select {
				case jobs <- j:
				case <-s.stop:
					return false
				}
			}
			return true
		}
		for sc.Scan() {
			line++
			if len(job.raw) == 0 {
				job.first = line
			}
			job.raw = append(job.raw, bytes.Clone(sc.Bytes()))
			if len(job.raw) == fileChunk {
				job.out = make(chan chunkResult, 1)
				if !send(job, job.out) {
					return
				}
				job = chunkJob{}
			}
		}
		if len(job.raw) > 0 {
			job.out = make(chan chunkResult, 1)
			if !send(job, job.out) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = &LineError{Line: line + 1, Err: fmt.Errorf("%w: longer than %d bytes", errLine, maxLine)}
			} else {
				err = fmt.Errorf("audit: read export: %w", err)
			}
			ready := make(chan chunkResult, 1)
			ready <- chunkResult{err: err}
			send(chunkJob{}, ready)
		}
	}()
}

// parseChunk parses a chunk's lines, stopping at the first bad one.
func parseChunk(j chunkJob) chunkResult {
	var res chunkResult
	res.lines = make([]Line, 0, len(j.raw))
	for i, raw := range j.raw {
		if len(raw) == 0 {
			continue
		}
		l, err := ParseLine(raw)
		if err != nil {
			res.err = &LineError{Line: j.first + i, Err: err}
			return res
		}
		res.lines = append(res.lines, l)
	}
	return res
}

func (s *fileSource) next(ctx context.Context) (Line, error) {
	if err := ctx.Err(); err != nil {
		return Line{}, err
	}
	if !s.started {
		s.start()
	}
	for len(s.cur.lines) == 0 {
		if s.cur.err != nil {
			return Line{}, s.cur.err
		}
		ready, ok := <-s.chunks
		if !ok {
			return Line{}, io.EOF
		}
		s.cur = <-ready
	}
	l := s.cur.lines[0]
	s.cur.lines = s.cur.lines[1:]
	return l, nil
}

func (s *fileSource) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
}

// Export writes the log from record since on as JSON lines (see Line) to
// w, and returns the number of records written. A since above 0 starts the
// export with a frontier line.
func Export(ctx context.Context, q store.AuditQueries, since int64, w io.Writer) (int64, error) {
	src := StoreSource(q, since)
	defer src.close()
	bw := bufio.NewWriterSize(w, 256<<10)
	var n int64
	var buf []byte
	for {
		l, err := src.next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
		if buf, err = l.AppendJSON(buf[:0]); err != nil {
			return n, err
		}
		if _, err := bw.Write(buf); err != nil {
			return n, fmt.Errorf("audit: export: %w", err)
		}
		if l.Type == LineRecord {
			n++
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}

// SeqAt returns the first record at or after t (the log's size when there
// is none), for export --since TIME. Records are timed when appended, so
// their times follow their order to within the moment a batch takes.
func SeqAt(ctx context.Context, q store.AuditQueries, t time.Time) (int64, error) {
	var from int64
	for {
		recs, err := q.ListAudit(ctx, from, storePage)
		if err != nil {
			return 0, fmt.Errorf("audit: find records since %s: %w", t.Format(time.RFC3339), err)
		}
		for _, r := range recs {
			if !r.Time.Before(t) {
				return r.Seq, nil
			}
		}
		if len(recs) < storePage {
			return q.AuditSize(ctx)
		}
		from = recs[len(recs)-1].Seq + 1
	}
}
