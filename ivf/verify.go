package ivf

import (
	"fmt"

	"github.com/shelfdb/shelf/store"
)

// ListError describes a list of an index directory whose codes or ids on
// disk do not match the CRC-32C its list table holds (or could not be
// read): the data file, the list, the part ("codes" or "ids") and its
// byte range. It wraps store.ErrCorrupt.
type ListError = store.ListError

// Verify reads every list of an index directory from its data file and
// checks it against its CRC-32Cs; it returns the damaged lists, in list
// order (none: nil). err reports what kept it from checking: an index in
// memory, a closed index, lists published by an older writer without
// checksums (store.ErrNoChecksums). It reads one snapshot, so searches
// and a writer go on meanwhile; progress goes to the index's Progress as
// the stage "verify", in entries.
func (ix *Index) Verify() ([]*ListError, error) {
	if ix.disk == nil {
		return nil, fmt.Errorf("%w: verification needs an index on disk", ErrParams)
	}
	return ix.disk.s.Verify(ix.storeProgress)
}
