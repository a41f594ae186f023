package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// FileSinkOptions tune a FileSink.
type FileSinkOptions struct {
	// Name of the sink in the log's cursors; "file" by default.
	Name string
	// MaxBytes rotates the file once it grows past this size (default
	// 100 MiB). Rotation happens between batches, so a batch is never split.
	MaxBytes int64
	// Keep is how many rotated files (path.1 newest … path.Keep oldest)
	// are kept (default 5).
	Keep int
}

// FileSink appends the log as JSON lines (the export format) to a file,
// synced to disk after every batch, with rotation by size.
//
// Every file verifies on its own like an export (moat audit verify
// --file): a file that starts after record 0 (after a rotation, or a sink
// added to a running log) begins with a frontier line, which the sink
// keeps from the leaf hashes it writes. Records delivered again after a
// restart (delivery is at least once) are recognised and not written
// twice, so the file holds each record once.
type FileSink struct {
	path string
	opts FileSinkOptions

	mu     sync.Mutex
	f      *os.File // nil after a failed rotation: reopened by the next Write
	closed bool
	size   int64
	buf    []byte

	next   int64     // next record the file lacks
	cpLast int64     // size of the last checkpoint in the file
	tree   *frontier // the tree of the records delivered so far; nil while unknown
}

// NewFileSink opens (creating with mode 0600) the file at path and finds
// where it ends.
func NewFileSink(path string, opts FileSinkOptions) (*FileSink, error) {
	if opts.Name == "" {
		opts.Name = "file"
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 100 << 20
	}
	if opts.Keep <= 0 {
		opts.Keep = 5
	}
	s := &FileSink{path: path, opts: opts, tree: &frontier{}}
	if err := s.open(); err != nil {
		return nil, err
	}
	for _, p := range []string{path, path + ".1"} {
		next, cp, found, err := fileTail(p)
		if err != nil {
			s.f.Close()
			return nil, fmt.Errorf("audit: file sink: %w", err)
		}
		if found {
			// The tree comes with the frontier the Log sends first.
			s.next, s.cpLast, s.tree = next, cp, nil
			break
		}
	}
	return s, nil
}

// fileTail reads the end of a sink file: the next record it lacks and its
// last checkpoint. A torn last line (a crash mid-write) is cut off.
func fileTail(path string) (next, cpLast int64, found bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, 0, false, err
	}
	start := max(0, info.Size()-2*maxLine)
	buf := make([]byte, info.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, false, err
	}
	if end := bytes.LastIndexByte(buf, '\n') + 1; end < len(buf) {
		if err := f.Truncate(start + int64(end)); err != nil {
			return 0, 0, false, err
		}
		buf = buf[:end]
	}
	lines := bytes.Split(bytes.TrimSuffix(buf, []byte("\n")), []byte("\n"))
	for i := len(lines) - 1; i >= 0 && !found; i-- {
		l, err := ParseLine(lines[i])
		if err != nil {
			continue // the first line of the window may be cut
		}
		switch l.Type {
		case LineCheckpoint:
			cpLast = max(cpLast, l.Checkpoint.Size)
		case LineRecord:
			next, found = l.Record.Seq+1, true
		}
	}
	return next, cpLast, found, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: file sink: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: file sink: %w", err)
	}
	s.f, s.size = f, info.Size()
	return nil
}

func (s *FileSink) Name() string { return s.opts.Name }

// Write appends the lines the file lacks and syncs it.
func (s *FileSink) Write(_ context.Context, lines []Line) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("audit: file sink: closed")
	}
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	// Work on copies: a failed write leaves the state as it was, and the
	// Log sends the same lines again.
	next, cpLast, tree := s.next, s.cpLast, s.tree
	if tree != nil {
		c := tree.clone()
		tree = &c
	}
	b := s.buf[:0]
	for i := range lines {
		l := &lines[i]
		write := true
		switch l.Type {
		case LineFrontier:
			f := frontier{size: l.Size, nodes: append([]tlog.Hash(nil), l.Hashes...)}
			tree = &f
			// A resumed stream repeats records the file has: skip them.
			write = s.size == 0 || l.Size > next
			next = max(next, l.Size)
		case LineRecord:
			seq := l.Record.Seq
			if tree == nil && seq == 0 {
				tree = &frontier{}
			}
			if tree != nil && tree.size == seq {
				tree.push(l.Hash, nil)
			} else {
				tree = nil
			}
			write = seq >= next
			next = max(next, seq+1)
		case LineCheckpoint:
			write = l.Checkpoint.Size > cpLast
			cpLast = max(cpLast, l.Checkpoint.Size)
		}
		if write {
			var err error
			if b, err = l.AppendJSON(b); err != nil {
				return err
			}
		}
	}
	s.buf = b
	if err := s.append(b); err != nil {
		return err
	}
	s.next, s.cpLast, s.tree = next, cpLast, tree
	if s.size >= s.opts.MaxBytes {
		// The batch is on disk: a failed rotation must not make the Log
		// send it again. The next Write reopens the file and reports.
		_ = s.rotate()
	}
	return nil
}

// append writes b and syncs, cutting a partial write back off.
func (s *FileSink) append(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := s.f.Write(b)
	if err != nil {
		if n > 0 {
			_ = s.f.Truncate(s.size)
		}
		return fmt.Errorf("audit: file sink %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit: file sink %s: sync: %w", s.path, err)
	}
	s.size += int64(n)
	return nil
}

// rotate shifts path.k to path.k+1, dropping the oldest, and starts a new
// file with the frontier of the records before it.
func (s *FileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("audit: file sink rotate: %w", err)
	}
	s.f = nil
	old := func(k int) string { return fmt.Sprintf("%s.%d", s.path, k) }
	if err := os.Remove(old(s.opts.Keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit: file sink rotate: %w", err)
	}
	for k := s.opts.Keep - 1; k >= 1; k-- {
		if err := os.Rename(old(k), old(k+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit: file sink rotate: %w", err)
		}
	}
	if err := os.Rename(s.path, old(1)); err != nil {
		return fmt.Errorf("audit: file sink rotate: %w", err)
	}
	if err := s.open(); err != nil {
		return err
	}
	if s.tree != nil && s.tree.size > 0 {
		l := Line{Type: LineFrontier, Size: s.tree.size, Hashes: s.tree.nodes}
		b, err := l.AppendJSON(nil)
		if err != nil {
			return err
		}
		return s.append(b)
	}
	return nil
}

func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
