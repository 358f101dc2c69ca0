// Package slots allocates free space inside one byte range of a file.
//
// It owns only the bookkeeping of which bytes in [Base, End) are free: it
// never reads or writes a file and knows nothing about vectors or inverted
// lists, so it imports nothing of the project. The store decides what the
// range means (the data area of its file), persists the used extents in its
// own metadata and, after a restart, hands them back to Rebuild instead of
// the allocator saving any state of its own.
//
// The free space is a set of extents kept in two B-trees, one ordered by
// (Len, Off) to answer best-fit queries and one ordered by Off to find the
// neighbours of a range, so every operation is O(log n) in the number of
// free extents. The invariants, verified by Allocator.Check, are:
//
//   - both trees hold the same set of extents;
//   - every free extent has a non-zero length and lies inside [Base, End);
//   - free extents never overlap and are never adjacent: freeing always
//     coalesces with free neighbours, so one contiguous hole is always one
//     extent and Largest is the true largest hole;
//   - FreeBytes + UsedBytes = End - Base, with FreeBytes equal to the sum of
//     the free extent lengths.
//
// Every argument or overlap error wraps ErrInvalid and leaves the allocator
// unchanged; no method panics on bad arguments. An Allocator is not safe for
// concurrent use.
package slots
