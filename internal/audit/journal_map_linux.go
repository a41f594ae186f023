package audit

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// On Linux the journal is written through a shared mapping of its file:
// copying a frame into the page cache costs less than a write(2), which on
// the machines Moat is measured on costs as much as encoding the record.
// A crash of the process loses nothing the mapping holds, as it loses
// nothing a write(2) returned from: both live in the page cache.

const canMapJournal = true

// allocateJournal makes the file size bytes long, with its blocks
// allocated, so that a full disk is an error here rather than a fault on
// writing a mapped page.
func allocateJournal(f *os.File, size int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func mapJournal(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
}

func unmapJournal(mem []byte) error { return syscall.Munmap(mem) }

// faultInForWrite faults mem's pages in writable, as a write to each
// would, without changing what they hold (MADV_POPULATE_WRITE, Linux 5.14).
func faultInForWrite(mem []byte) error { return unix.Madvise(mem, unix.MADV_POPULATE_WRITE) }

// cannotMap says err is a file system's refusal to allocate or map a
// file, after which the journal falls back to write(2).
func cannotMap(err error) bool {
	return errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) ||
		errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EACCES)
}
