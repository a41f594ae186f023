package audit

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFullDiskFailsClosed writes the audit file sink onto a filesystem of
// 64 KiB (a tmpfs mounted for the test; skipped where mounting is not
// allowed). Once it is full, an append that the file must accept fails,
// naming the sink; everything accepted before stays, in the database and
// in the file, and both still verify.
func TestFullDiskFailsClosed(t *testing.T) {
	dir := smallDisk(t)

	s, _ := openStore(t)
	skey, vkey := genKeyText(t)
	signer, _ := ParseSigningKey([]byte(skey))
	_, _, hkey := testKeys(t)
	path := filepath.Join(dir, "audit.jsonl")
	fs, err := NewFileSink(path, FileSinkOptions{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, s, signer, hkey, Options{Sinks: []Sink{fs}, Require: []string{"file"}, CheckpointEvery: 1 << 20})
	accepted, appendErr := appendUntilFull(t, l)
	if !errors.Is(appendErr, ErrSink) {
		t.Fatalf("append on a full disk: %v, want ErrSink", appendErr)
	}
	t.Logf("the disk filled after %d records: %v", accepted, appendErr)
	if accepted == 0 {
		t.Fatal("no record was accepted before the disk filled")
	}
	// The next append fails too: the sink does not skip what it missed.
	if _, err := l.Append(t.Context(), testRecord(accepted+1)); err == nil {
		t.Fatal("an append succeeded while the required file sink was still full")
	}
	l.Close()
	if n, err := s.AuditSize(t.Context()); err != nil || n < int64(accepted) {
		t.Fatalf("the database holds %d records (%v), fewer than the %d accepted", n, err, accepted)
	}
	if rep := verifyFiles(t, []byte(vkey), path); rep.Records < int64(accepted) {
		t.Fatalf("the file verifies with %d records, fewer than the %d accepted", rep.Records, accepted)
	}
}

// TestFullJournalDiskFailsClosed puts the journal on a 64 KiB filesystem:
// once it is full an append fails, and every record acknowledged before
// reaches the database and verifies.
func TestFullJournalDiskFailsClosed(t *testing.T) {
	dir := smallDisk(t)

	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{Journal: filepath.Join(dir, JournalFile)})
	accepted, appendErr := appendUntilFull(t, l)
	if !errors.Is(appendErr, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", appendErr)
	}
	t.Logf("the journal filled after %d records: %v", accepted, appendErr)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyStore(t, s, verifier); rep.Records != int64(accepted) {
		t.Fatalf("the database holds %d records, want the %d accepted", rep.Records, accepted)
	}
}

// smallDisk mounts a tmpfs of 64 KiB for the test, or skips it where
// mounting is not allowed.
func smallDisk(t *testing.T) string {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v); the full-disk test needs it", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// appendUntilFull appends records until an append fails, and returns how
// many were accepted and the failure.
func appendUntilFull(t *testing.T, l *Log) (int, error) {
	for i := range 10_000 {
		if _, err := l.Append(t.Context(), testRecord(i)); err != nil {
			return i, err
		}
	}
	t.Fatal("10,000 records fitted in 64 KiB; the disk never filled")
	return 0, nil
}
