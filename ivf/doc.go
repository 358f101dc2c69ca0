// Package ivf is the IVF-PQ index over inverted lists: a coarse quantizer
// (k-means centroids) sends each vector to a list, a product quantizer
// encodes its residual, and search scans the nprobe nearest lists with
// distance tables (faiss::IndexIVFPQ, and faiss::IndexIVFFlat with Flat).
//
// The lists are behind the Lists interface, with an in-memory
// implementation (MemLists) and the on-disk one over store/ (DiskLists);
// an index built in memory moves to disk with ToDisk, which uses the
// store's two-pass merge. Flat two-level codes (list number + PQ code,
// faiss::Index2Layer) are the exchange format of the parallel build.
// FAISS index files are package faissio's: it builds an index from a
// file's parts with NewTrained and CreateFrom (in memory, or a directory
// made the one way ToDisk makes it) and exports one through Params,
// Centroids, PQ and Lists.
//
// Invariants: a trained model (centroids, PQ codebooks, metric) never
// changes; it is written once, checksummed, beside the lists. Distances
// are squared L2 (smaller is better) or inner products / cosine
// similarities (larger is better); results are sorted best first and
// padded with id -1.
//
// ivf imports pq/, kmeans/, store/ and internal/vecmath; it never touches
// mmap or unsafe code.
package ivf
