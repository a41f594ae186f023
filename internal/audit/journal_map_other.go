//go:build !linux

package audit

import (
	"errors"
	"os"
)

// Elsewhere the journal is written with write(2) (see journal_map_linux.go).

const canMapJournal = false

func allocateJournal(*os.File, int64) error    { return errors.ErrUnsupported }
func mapJournal(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported }
func unmapJournal([]byte) error                { return nil }
func faultInForWrite([]byte) error             { return errors.ErrUnsupported }
func cannotMap(error) bool                     { return true }
