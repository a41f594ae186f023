package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
)

// The journal is an append-only file that holds each record, in its
// canonical encoding, from the moment Append accepts it until the database
// does. Copying the frames into a shared mapping of the file (Linux), or
// one write(2) per Append elsewhere, makes the records durable against a
// crash of the process, as a commit with SQLite's synchronous=NORMAL is
// (neither survives a power cut unsynced); the writer goroutine then moves
// them into the database in batches, off the caller's path, and the next
// Open commits whatever a crash left behind before the log takes new
// records.
//
// A frame is:
//
//	<body length: uint32, big endian> <CRC-32C of body: uint32, big endian> <body: canonical record>
//
// A mapped journal's file is longer than its frames: the rest is zeros,
// allocated ahead, and a zero header ends the journal.
type journal struct {
	f    *os.File
	path string
	size int64 // bytes of whole frames in the file
	// mem maps the whole file once the first frame is copied in; nil
	// before, and for good when writes says so.
	mem []byte
	// writes says frames go in with write(2): mapping is not supported
	// here, or the file system refused it.
	writes bool
	// faulted is how far into mem the writer has faulted pages in for
	// writing (faultAhead); zero for a new mapping. cannotFault says the
	// kernel cannot do it ahead.
	faulted     int64
	cannotFault bool
	// broken is set when a failed write could not be cut off again: the
	// file may end in part of a frame, so nothing more is written to it.
	broken error
}

// journalMapMin is the least a mapped journal's file grows by; it doubles
// from there, short of a full disk.
const journalMapMin = 1 << 20

// JournalFile is the journal's name in the data directory.
const JournalFile = "audit.journal"

const journalFrameHeader = 8

// maxJournalBody bounds one frame: a record's fields and details are
// bounded well below it.
const maxJournalBody = maxDetailsLen + 8*maxFieldLen

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errJournal reports a journal that cannot be read back.
var errJournal = errors.New("audit: damaged journal")

// openJournal opens (creating) the journal at path and reads back the
// records it holds. A frame cut short at the end of the file (a crash in
// the middle of a write) is dropped and cut off; any other damage is an
// error, since records in it may have been acknowledged.
func openJournal(path string) (*journal, []stored, error) {
	// A crash while the journal was being emptied may leave its empty
	// replacement behind.
	if err := os.Remove(path + ".new"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("audit: open journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: open journal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("audit: read journal %s: %w", path, err)
	}
	recs, whole, err := readJournal(data)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w %s: %w; move it aside to start without its records, which then are missing from the log", errJournal, path, err)
	}
	if whole < int64(len(data)) {
		if err := f.Truncate(whole); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("audit: cut the torn end off journal %s: %w", path, err)
		}
	}
	return &journal{f: f, path: path, size: whole, writes: !canMapJournal}, recs, nil
}

// readJournal decodes the frames of data and returns their records and the
// length of the whole frames. A frame cut short at the end, or an end of
// zero bytes (what a file system may leave of a write it lost), is not an
// error: those bytes were never acknowledged.
func readJournal(data []byte) ([]stored, int64, error) {
	var recs []stored
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < journalFrameHeader {
			return recs, int64(off), nil
		}
		n := binary.BigEndian.Uint32(rest)
		sum := binary.BigEndian.Uint32(rest[4:])
		if n == 0 && sum == 0 {
			// A mapped journal writes a frame's header after its body
			// (journal.copyFrames), so a crash while copying leaves a zero
			// header, perhaps before part of a body: never acknowledged.
			// A whole frame after it is damage.
			if at := wholeFrameIn(rest[journalFrameHeader:]); at >= 0 {
				return nil, 0, fmt.Errorf("frame at byte %d has no header, yet a whole frame follows at byte %d", off, off+journalFrameHeader+at)
			}
			return recs, int64(off), nil
		}
		if n == 0 || n > maxJournalBody {
			return nil, 0, fmt.Errorf("frame at byte %d claims %d bytes", off, n)
		}
		if uint64(len(rest)-journalFrameHeader) < uint64(n) {
			return recs, int64(off), nil
		}
		body := rest[journalFrameHeader : journalFrameHeader+int(n)]
		if crc32.Checksum(body, castagnoli) != sum {
			return nil, 0, fmt.Errorf("frame at byte %d fails its checksum", off)
		}
		r, err := parseCanonical(body)
		if err != nil {
			return nil, 0, fmt.Errorf("frame at byte %d: %w", off, err)
		}
		if len(recs) > 0 && r.Seq != recs[len(recs)-1].Seq+1 {
			return nil, 0, fmt.Errorf("frame at byte %d holds record %d after record %d", off, r.Seq, recs[len(recs)-1].Seq)
		}
		recs = append(recs, r)
		off += journalFrameHeader + int(n)
	}
	return recs, int64(off), nil
}

// wholeFrameIn returns where in b a whole frame starts, or -1. A frame's
// body starts with the record version, so only the places it occurs are
// tried.
func wholeFrameIn(b []byte) int {
	version := []byte(recordVersion + "\n")
	for from := journalFrameHeader; from < len(b); {
		i := bytes.Index(b[from:], version)
		if i < 0 {
			return -1
		}
		body := from + i
		start := body - journalFrameHeader
		n := int64(binary.BigEndian.Uint32(b[start:]))
		if n > 0 && n <= maxJournalBody && int64(body)+n <= int64(len(b)) &&
			crc32.Checksum(b[body:body+int(n)], castagnoli) == binary.BigEndian.Uint32(b[start+4:]) {
			return start
		}
		from = body + 1
	}
	return -1
}

// appendJournalFrame appends the frame of r: the canonical encoding goes
// in after room for the header, which is filled in once its length and
// checksum are known.
func appendJournalFrame(b []byte, r *stored) []byte {
	mark := len(b)
	b = appendCanonical(append(b, make([]byte, journalFrameHeader)...), r)
	frame := b[mark:]
	body := frame[journalFrameHeader:]
	binary.BigEndian.PutUint32(frame, uint32(len(body)))
	binary.BigEndian.PutUint32(frame[4:], crc32.Checksum(body, castagnoli))
	return b
}

// write appends frames at the end of the journal: copied into the
// mapping, or in one system call.
func (j *journal) write(frames []byte) error {
	if j.broken != nil {
		return j.broken
	}
	if !j.writes {
		end := j.size + int64(len(frames))
		if end > int64(len(j.mem)) {
			if err := j.grow(end); err != nil {
				return err
			}
		}
		if !j.writes { // grow may have put the journal on write(2)
			j.copyFrames(frames)
			return nil
		}
	}
	if _, err := j.f.WriteAt(frames, j.size); err != nil {
		// Part of the frames may be in the file: cut them off, or stop
		// writing, since the next frame would follow a torn one.
		if terr := j.f.Truncate(j.size); terr != nil {
			j.broken = fmt.Errorf("audit: journal %s: a write failed (%w) and could not be undone (%w); restart to recover", j.path, err, terr)
		}
		return fmt.Errorf("audit: write journal %s: %w", j.path, err)
	}
	j.size += int64(len(frames))
	return nil
}

// copyFrames copies whole frames into the mapping after the last one.
// Each frame's body goes in before its header, and the header in one
// eight-byte store: a crash part way leaves a zero header, which ends the
// journal when it is read back.
func (j *journal) copyFrames(frames []byte) {
	at := j.size
	for len(frames) > 0 {
		n := journalFrameHeader + int64(binary.BigEndian.Uint32(frames))
		dst := j.mem[at : at+n]
		copy(dst[journalFrameHeader:], frames[journalFrameHeader:n])
		binary.BigEndian.PutUint64(dst, binary.BigEndian.Uint64(frames))
		at, frames = at+n, frames[n:]
	}
	j.size = at
}

// grow makes the mapped file hold at least end bytes: twice its length,
// or on a full disk just what end needs. A file system that cannot
// allocate or map the file puts the journal on write(2) for good.
func (j *journal) grow(end int64) error {
	page := int64(os.Getpagesize())
	need := (end + page - 1) / page * page
	size := max(need, 2*int64(len(j.mem)), journalMapMin)
	err := allocateJournal(j.f, size)
	if errors.Is(err, syscall.ENOSPC) && size > need {
		size = need
		err = allocateJournal(j.f, size)
	}
	var mem []byte
	if err == nil {
		mem, err = mapJournal(j.f, int(size))
	}
	if err != nil {
		if !cannotMap(err) {
			return fmt.Errorf("audit: grow journal %s: %w", j.path, err)
		}
		j.writes = true
		if j.mem != nil {
			// What was copied in is in the file; writes go on after it.
			err = unmapJournal(j.mem)
			j.mem = nil
		}
		return err
	}
	if j.mem != nil {
		if err := unmapJournal(j.mem); err != nil {
			unmapJournal(mem)
			return fmt.Errorf("audit: grow journal %s: %w", j.path, err)
		}
	}
	j.mem, j.faulted = mem, 0
	return nil
}

// writeAhead is how far past the journal's end the writer keeps the
// mapping grown and its pages faulted in for writing. A write fault on a
// page of the mapped file costs 5–9 µs on the machines Moat is measured
// on (a trap into the kernel, and the file system readying the block), and
// was paid by whichever call's record first crossed into the page; faulted
// in by the writer, a page costs about 1.8 µs, off every call's path.
// 256 KiB is about 60 ms of records at 2,000 calls a second, well over the
// writer's gathering delay.
const writeAhead = 256 << 10

// writeAheadStep bounds the bytes one faultAhead readies, and so how long
// the writer holds the log's lock for it.
const writeAheadStep = 32 << 10

// faultAhead grows the mapping to writeAhead past the journal's end and
// faults in up to writeAheadStep bytes of it for writing, and says whether
// more remains. It does nothing for a journal written with write(2), and
// stops for good where the kernel cannot fault pages in ahead: appenders
// then fault them in as they copy. A failure to grow (a full disk) is left
// to the next append that needs the room, which reports it.
func (j *journal) faultAhead() (more bool) {
	if j.writes || j.broken != nil || j.cannotFault {
		return false
	}
	page := int64(os.Getpagesize())
	want := (j.size + writeAhead + page - 1) / page * page
	if want > int64(len(j.mem)) {
		if err := j.grow(want); err != nil || j.writes {
			return false
		}
	}
	from := max(j.faulted, j.size/page*page)
	to := min(from+writeAheadStep, want)
	if from >= to {
		return false
	}
	if err := faultInForWrite(j.mem[from:to]); err != nil {
		// EINVAL: a kernel before Linux 5.14. Anything else (a pending
		// signal, memory short) may pass.
		j.cannotFault = errors.Is(err, syscall.EINVAL)
		return false
	}
	j.faulted = to
	return to < want
}

// reset empties the journal once the database holds all its records,
// which also mends a journal a failed write left broken. It puts a new,
// empty file in the old one's place rather than truncating it, since
// truncating waits for the file's pages being written back to disk, which
// appenders would wait for too; the old file is returned for the caller to
// close when it holds no lock.
func (j *journal) reset() (io.Closer, error) {
	fresh, err := os.OpenFile(j.path+".new", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: empty journal %s: %w", j.path, err)
	}
	if err := os.Rename(j.path+".new", j.path); err != nil {
		fresh.Close()
		return nil, fmt.Errorf("audit: empty journal %s: %w", j.path, err)
	}
	old := &journal{f: j.f, mem: j.mem}
	j.f, j.mem, j.size, j.broken, j.faulted = fresh, nil, 0, nil, 0
	return old, nil
}

// Close unmaps and closes the journal's file; reset hands the old one to
// its caller as an io.Closer.
func (j *journal) Close() error {
	var err error
	if j.mem != nil {
		err = unmapJournal(j.mem)
		j.mem = nil
	}
	return errors.Join(err, j.f.Close())
}

// parseCanonical decodes a record's canonical encoding (appendCanonical),
// accepting only bytes that encode back to themselves.
func parseCanonical(b []byte) (stored, error) {
	var r stored
	rest, ok := bytes.CutPrefix(b, []byte(recordVersion+"\n"))
	if !ok {
		return r, errors.New("not a canonical record")
	}
	var micros int64
	var err error
	if r.Seq, rest, err = cutNumber(rest); err != nil {
		return r, fmt.Errorf("seq: %w", err)
	}
	if micros, rest, err = cutNumber(rest); err != nil {
		return r, fmt.Errorf("time: %w", err)
	}
	r.Time = time.UnixMicro(micros).UTC()
	var fields [5][]byte
	for i := range fields {
		if fields[i], rest, err = cutField(rest, i == len(fields)-1); err != nil {
			return r, fmt.Errorf("field %d: %w", i+1, err)
		}
	}
	r.Actor, r.Action, r.Resource, r.Outcome = string(fields[0]), string(fields[1]), string(fields[2]), string(fields[3])
	r.Details = bytes.Clone(fields[4])
	if r.Seq < 0 || !bytes.Equal(appendCanonical(nil, &r), b) {
		return r, errors.New("not in canonical form")
	}
	return r, nil
}

// cutNumber reads a decimal number ended by a newline.
func cutNumber(b []byte) (int64, []byte, error) {
	digits, rest, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return 0, nil, errors.New("no end of line")
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, nil, errors.New("not a number")
	}
	return n, rest, nil
}

// cutField reads <length>:<bytes>, then a newline unless last.
func cutField(b []byte, last bool) ([]byte, []byte, error) {
	digits, rest, ok := bytes.Cut(b, []byte{':'})
	if !ok || len(digits) > 10 {
		return nil, nil, errors.New("no length")
	}
	n, err := strconv.Atoi(string(digits))
	if err != nil || n < 0 || n > len(rest) {
		return nil, nil, errors.New("bad length")
	}
	field, rest := rest[:n], rest[n:]
	if last {
		if len(rest) != 0 {
			return nil, nil, errors.New("bytes after the last field")
		}
		return field, rest, nil
	}
	if len(rest) == 0 || rest[0] != '\n' {
		return nil, nil, errors.New("no end of line")
	}
	return field, rest[1:], nil
}

// JournalRange reads the journal at path, without changing it, and returns
// the sequence numbers of the records it holds: first..end-1 (end == first
// when it holds none, or there is no journal). Records from the database's
// size onwards are not in the database yet: a running log commits them
// within milliseconds, and after a crash the next Open does.
func JournalRange(path string) (first, end int64, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("audit: read journal: %w", err)
	}
	recs, _, err := readJournal(data)
	if err != nil {
		return 0, 0, fmt.Errorf("%w %s: %w", errJournal, path, err)
	}
	if len(recs) == 0 {
		return 0, 0, nil
	}
	return recs[0].Seq, recs[len(recs)-1].Seq + 1, nil
}
