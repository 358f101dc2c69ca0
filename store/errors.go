package store

import "errors"

// Sentinel errors. Errors returned by the store wrap one of these (or an
// error from the operating system) together with the file, list or field
// concerned, so callers test them with errors.Is.
var (
	// ErrCorrupt marks a file whose contents fail validation: bad magic,
	// checksum mismatch, a truncated file, a list table that does not fit.
	ErrCorrupt = errors.New("store: corrupt")
	// ErrReadOnly is returned by write operations on a read-only store.
	ErrReadOnly = errors.New("store: read-only")
	// ErrClosed is returned by operations on a closed store.
	ErrClosed = errors.New("store: closed")
	// ErrList is returned for a list number outside [0, nlist).
	ErrList = errors.New("store: list number out of range")
	// ErrEntry is returned for an entry offset outside a list.
	ErrEntry = errors.New("store: entry out of range")
	// ErrCodeSize is returned when a code buffer's length is not a multiple
	// of the store's code size or does not match the number of ids.
	ErrCodeSize = errors.New("store: wrong code length")
	// ErrLocked is returned when another process holds the store for writing.
	ErrLocked = errors.New("store: locked by another writer")
	// ErrNotExist is returned when opening a directory that holds no store.
	ErrNotExist = errors.New("store: no store")
	// ErrExist is returned by Create when a store already exists.
	ErrExist = errors.New("store: already exists")
	// ErrMismatch is returned when two stores (or a store and a source) are
	// not compatible, e.g. different code sizes or list counts.
	ErrMismatch = errors.New("store: mismatch")
	// ErrFailed is wrapped by every write after a commit failed in a way
	// that leaves the in-memory state uncertain; reopen the store.
	ErrFailed = errors.New("store: failed, reopen required")
	// ErrNoChecksums is returned by verifications of a list table of
	// format 1, which has no CRCs: one a read-only process finds
	// published by an older writer (opening the store for writing once
	// adds them).
	ErrNoChecksums = errors.New("store: list table has no checksums (format 1)")
	// ErrBatchDone is returned by a Batch after Commit or Abort.
	ErrBatchDone = errors.New("store: batch already committed or aborted")
)
