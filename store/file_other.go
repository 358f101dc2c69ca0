//go:build !linux

package store

// startWriteback is a no-op where sync_file_range is not available.
func startWriteback(f dataFile, off, n uint64) {}
