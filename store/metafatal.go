package store

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleFatal is the panic value of quietLogger.Fatalf. Pebble calls
// Fatalf where it cannot go on and expects it not to return: a commit
// whose WAL write or sync fails (a full disk, an I/O error) is one.
// Returning from Fatalf would let Pebble report that commit as done, so
// Fatalf panics, and commitMeta turns the panic back into an error on the
// committing goroutine. Fatal errors on Pebble's own goroutines (flushes,
// compactions) still end the process, as with Pebble's default logger;
// the data file and the last synced commit are intact either way.
type pebbleFatal struct{ msg string }

func (p pebbleFatal) Error() string { return p.msg }

// errMetaBroken marks a commit that Pebble gave up on: the store writes
// nothing more until it is reopened. Closing the database still works
// (it reports the error again) and releases its directory lock.
var errMetaBroken = errors.New("metadata database stopped")

// recoverFatal turns a pebbleFatal panic into *err; other panics go on.
func recoverFatal(err *error) {
	if r := recover(); r != nil {
		f, ok := r.(pebbleFatal)
		if !ok {
			panic(r)
		}
		*err = fmt.Errorf("%w: %s", errMetaBroken, f.msg)
	}
}

// closeMeta closes db, a fatal Pebble error included.
func closeMeta(db *pebble.DB) (err error) {
	defer recoverFatal(&err)
	return db.Close()
}

// commitMeta commits pb. A fatal Pebble error during the commit comes
// back as an error (errMetaBroken wrapped): the metadata database is then
// unusable until the store is reopened.
func commitMeta(pb *pebble.Batch, wo *pebble.WriteOptions) (err error) {
	defer recoverFatal(&err)
	return pb.Commit(wo)
}
