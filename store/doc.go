// Package store keeps the inverted lists of an IVF index on disk: one data
// file, mapped read-only into memory, holds every list's codes and ids, and a
// Pebble database beside it holds the list table (offset, capacity, size and
// the CRC-32Cs of the codes and ids of each list), the file size and a small
// key space for the index layer.
//
// It mirrors faiss::OnDiskInvertedLists, made crash-safe and compactable.
//
// # Layout
//
// A store directory holds:
//
//	meta/              Pebble: format, code size, nlist, list table, user records
//	lists.<gen>.data   the data file; <gen> changes on compaction
//	table.snap         the whole list table of one commit S, for read-only processes
//	table.log          a header naming S, then one record per commit after S
//	                   (rows and user records changed, file size, generation,
//	                   seq; CRC-32C each), appended before Commit returns
//	readers/           one locked file per read-only process (the commit it reads)
//	writer.lock        flock'd by the one read-write process, holds its pid
//
// table.snap + table.log always reach the last commit that returned (a
// killed writer leaves them in the page cache); the log is folded into a
// new table.snap once it outgrows the table, and at Close. A read-only
// process that cannot write readers/ holds a shared flock on the data
// file instead, and the writer reuses no freed space while it does.
//
// The data file starts with a 4 KiB header (magic, version, code size,
// generation, store id, CRC-32C). Each list owns one slot laid out as
// codes[capacity*codeSize], padded to 8 bytes, then ids[capacity] as int64
// little endian. Only the first size entries of a slot are meaningful.
//
// # Invariants
//
//   - Slots of committed lists never overlap, lie inside the committed file
//     size, and size <= capacity. Free space is derived from the list table
//     at open, so it can never disagree with it. (*Store).Check verifies this.
//   - Write order (argued in commit.go): codes and ids are written (pwrite,
//     never through the map) only into space no committed list references,
//     the file is fdatasync'd, then one synced Pebble batch publishes them.
//     A crash before the batch leaves the previous state; after it, the new
//     state is on disk.
//   - A slot freed by commit N is reused only when every live reader (views
//     in this process, read-only processes registered in readers/) reads a
//     commit >= N, the published table (table.snap + table.log) is durably
//     at least N, and no unregistered read-only process holds the data file.
//   - The published table is written after Pebble's commit, so it is never
//     newer than Pebble's last commit unless Pebble lost commits it had
//     acknowledged (a damaged WAL): Open then restores them from it, or
//     refuses to open; it never reopens behind it (publish.go, witness).
//   - Every committed list's codes and ids match the CRCs of its row
//     (crc.go): the commit that publishes bytes publishes their CRCs, and
//     no write computes CRCs over bytes it read without checking them.
//   - A committed region of a slot is never rewritten in place: updates and
//     appends below a list's high-water mark relocate the list (copy on
//     write), so a reader never sees a torn list.
//   - The data file never shrinks in place; compaction writes a new file and
//     switches to it in one Pebble commit. Views keep their own mapping alive,
//     so growth, remapping and compaction never invalidate a view.
//
// # Files
//
//	store.go        Options, Create, Open, OpenReadOnly, Close
//	publish.go      table.snap + table.log: publishing, reading, Refresh, the witness check at open
//	batch.go        the Batch API: Begin, Add, AddSpread, Update, Resize, Clear, meta records
//	commit.go       the write order (crash safety), Commit, Abort, freed-slot reuse
//	buffer.go       what a batch holds before writing: per-list buffers, AddSpread blocks
//	flush.go        flushAll: plan, place, scatter and write buffered entries
//	alloc.go        free space and file growth: alloc, allocRegion, placeSlots, relocate, grow
//	slotwriter.go   the one slot writer (slotJob, slotWriter) every write goes through
//	merge.go        MergeFrom, SetAllListsSizes, Crop, CopySubsetTo
//	compact.go      Compact: every list rewritten into a new file, switched in one commit
//	writebehind.go  bounded write-back behind long sequential writes
//	file*.go        the data file seam (dataFile) and its system calls: pwritev, fdatasync,
//	                fallocate, sync_file_range, fadvise
//	mmap.go         all mmap and unsafe code
//	meta.go table.go metafatal.go  the Pebble records and the published files' encodings,
//	                the list table, Pebble's fatal errors
//	crc.go verify.go  the lists' CRCs and how writes keep them; Verify, Check's CRCs, CheckList
//	view.go stats.go readers.go  views, statistics, cross-process readers
//	errors.go endian_check.go    sentinel errors; little-endian builds only
//
// This package imports slots/ and internal/atomicfile (table.snap is
// replaced through it) and nothing else of the project: never ivf/; it
// knows nothing about vectors.
package store
