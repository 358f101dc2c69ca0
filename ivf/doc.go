// Package ivf is the IVF-PQ index over inverted lists: a coarse quantizer
// (k-means centroids) sends each vector to a list, a product quantizer
// encodes its residual, and search scans the nprobe nearest lists with
// distance tables (faiss::IndexIVFPQ, and faiss::IndexIVFFlat with Flat).
//
// # What it owns
//
// The index, and the index directory: nothing else opens its files or
// writes its records. An index directory (dir.go) holds the model file,
// written once and checksummed, and the store of the lists, whose commits
// also carry the index's id bookkeeping (ids.go). It is created one way
// only (createDir, used by ToDisk and CreateFrom): lists first, with
// the next id and id bounds in the same commit as the vectors, the model
// last. Open, Compact, StorageStats, Merge (code blocks and other
// indexes) and Refresh are the index's operations on it. The code block
// format of the parallel build (blocks.go: EncodeBlock, then MergeBlocks)
// is defined here too.
//
// FAISS index files are package faissio's: it builds an index from a
// file's parts with NewTrained and CreateFrom (in memory, or a directory
// made the one way ToDisk makes it) and exports one through Params,
// Centroids, PQ and Lists.
//
// The lists are behind the Lists interface (faiss::InvertedLists): the
// in-memory MemLists and the store of an index directory; Index uses
// only the interface, and one conformance suite tests both.
//
// # Invariants
//
//   - A trained model (centroids, PQ codebooks, metric) never changes.
//   - The next sequential id is larger than every id the index ever held,
//     so Add never hands out an id twice; a merge that would give two
//     vectors one id is refused unless asked for (ErrDuplicateIDs).
//   - A directory without a model file is not an index.
//   - Distances are squared L2 (smaller is better) or inner products /
//     cosine similarities (larger is better); results are sorted best
//     first and padded with id -1, which is never a vector's id.
//
// # Imports
//
// pq/, kmeans/, store/ and internal/ packages; never gpu/, tools/ or
// faissio/, and no mmap or unsafe code.
package ivf
