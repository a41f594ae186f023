package audit

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// killedAppenderDir names the data directory of the appender process that
// TestJournalSurvivesKill starts (this test binary run again).
const killedAppenderDir = "MOAT_TEST_KILLED_APPENDER_DIR"

// TestJournalSurvivesKill runs appenders in a process of their own, each
// printing the seq of every record the log acknowledged, and kills the
// process (SIGKILL) while they append. Reopened, the log holds every
// acknowledged record (the journal held what the database had not taken
// yet) and verifies.
func TestJournalSurvivesKill(t *testing.T) {
	if dir := os.Getenv(killedAppenderDir); dir != "" {
		appendUntilKilled(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a process")
	}
	t.Parallel()
	dir := t.TempDir()
	cmd := osexec.Command(os.Args[0], "-test.run=^TestJournalSurvivesKill$")
	cmd.Env = append(os.Environ(), killedAppenderDir+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int64]bool{}
	lines := bufio.NewScanner(out)
	// readAcked reads acknowledged seqs until there are upTo of them or the
	// output ends.
	readAcked := func(upTo int) {
		for len(acked) < upTo && lines.Scan() {
			if seq, err := strconv.ParseInt(lines.Text(), 10, 64); err == nil {
				acked[seq] = true
			}
		}
	}
	readAcked(3000)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	readAcked(math.MaxInt)
	cmd.Wait()
	if len(acked) < 3000 {
		t.Fatalf("the appender acknowledged %d records before it stopped", len(acked))
	}

	keys, s := openAppenderDir(t, dir)
	defer s.Close()
	dbHeld, _ := s.AuditSize(t.Context())
	first, end, err := JournalRange(filepath.Join(dir, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %d acknowledged records: the database held %d, the journal %d..%d", len(acked), dbHeld, first, end-1)
	l := openLog(t, s, keys.Signer, keys.HMAC, Options{Journal: filepath.Join(dir, JournalFile)})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := verifyStore(t, s, keys.Verifier)
	for seq := range acked {
		if seq >= rep.Records {
			t.Fatalf("record %d was acknowledged but the reopened log holds %d records", seq, rep.Records)
		}
	}
}

// appendUntilKilled is the appender process: four goroutines append
// until the process is killed, printing each acknowledged seq. Should the
// test that started it be gone, it stops by itself after a minute.
func appendUntilKilled(t *testing.T, dir string) {
	time.AfterFunc(time.Minute, func() { os.Exit(2) })
	keys, s := openAppenderDir(t, dir)
	l, err := Open(context.Background(), s, keys.Signer, keys.HMAC, Options{Journal: filepath.Join(dir, JournalFile)})
	if err != nil {
		t.Fatal(err)
	}
	acked := make(chan int64, 1024)
	for g := range 4 {
		go func() {
			for i := g; ; i += 4 {
				seqs, err := l.Append(context.Background(), testRecord(i))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				acked <- seqs[0]
			}
		}()
	}
	w := bufio.NewWriter(os.Stdout)
	for seq := range acked {
		fmt.Fprintln(w, seq)
		if len(acked) == 0 {
			w.Flush()
		}
	}
}

// openAppenderDir opens the appender's keys, made on first use, and its
// database.
func openAppenderDir(t *testing.T, dir string) (Keys, store.Store) {
	keys, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(context.Background(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	return keys, s
}
