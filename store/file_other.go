//go:build !linux

package store

import "os"

// startWriteback is a no-op where sync_file_range is not available.
func startWriteback(f dataFile, off, n uint64) {}

// waitWriteback does nothing where sync_file_range is not available: the
// fdatasync before each commit writes everything.
func waitWriteback(f dataFile, off, n uint64, drop bool) error { return nil }

// physicalMemory is unknown here: writers never drop pages behind them.
func physicalMemory() uint64 { return 0 }

const (
	adviseWillNeed = 0
	adviseDontNeed = 0
)

// adviseFile does nothing where posix_fadvise is not available.
func adviseFile(f dataFile, off, n uint64, advice int) {}

// openDirect: direct reads are for Linux only.
func openDirect(*os.File) (*os.File, error) { return nil, errDirectUnsupported }
