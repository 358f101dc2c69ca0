// Package faissio reads and writes FAISS index files (faiss.write_index /
// faiss.read_index) of IndexIVFPQ, IndexIVFFlat and (8-bit layers)
// IndexIVFResidualQuantizer: Inspect reads a file's
// header, Read / ReadWith load a file into an in-memory index, Import
// streams one into a new index directory, and Write exports an index.
//
// The format is FAISS's serialization of its C++ objects, little endian:
// a fourcc names each polymorphic object, then its fields in declaration
// order. What this package reads and writes:
//
//	IndexIVFPQ "IwPQ" | IndexIVFFlat "IwFl" | IndexIVFResidualQuantizer "IwRQ":
//	  index header   d int32, ntotal int64, two unused int64, is_trained u8,
//	                 metric int32 (0 inner product, 1 L2; a float argument
//	                 follows for the others)
//	  nlist, nprobe  uint64
//	  quantizer      "IxF2" | "IxFI" | "IxFl" + index header, then the
//	                 centroids: uint64 count of floats + float32 values
//	  direct map     type u8, uint64 count + int64 values, and for type 2
//	                 (hashtable) uint64 count + (int64, int64) pairs
//	  PQ (IwPQ only) by_residual u8, code_size uint64, then the product
//	                 quantizer: d, M, nbits uint64, uint64 count + floats
//	                 (M x 2^nbits x d/M)
//	RQ (IwRQ only)   code_size uint64, the ResidualQuantizer (d, M, nbits
//	                 vector, is_trained, codebooks, search_type, norm_min,
//	                 norm_max, qnorm levels for the cqint search types,
//	                 train_type, max_beam_size: rqfile.go), by_residual u8,
//	                 use_precomputed_table int32
//	  inverted lists "ilar": nlist, code_size uint64, then the list sizes,
//	                 "full" (uint64 count = nlist + nlist uint64 sizes) or
//	                 "sprs" (uint64 count + (list, size) uint64 pairs), then
//	                 for each non-empty list its codes, then its int64 ids.
//	                 "ilod" (OnDiskInvertedLists): nlist, code_size uint64,
//	                 uint64 count + (size, capacity, offset) uint64 triples,
//	                 uint64 count + (offset, capacity) uint64 free slots,
//	                 uint64 length + the data file name, totsize uint64; in
//	                 the data file list l holds codes[capacity*code_size]
//	                 then ids[capacity] int64 at its offset.
//
// The legacy formats "IvPQ", "IvFL" and "IvFl" (FAISS before 2018) keep
// each list's ids as a vector after the quantizer and its codes as a
// vector after the PQ; they are read too.
//
// # Files
//
// read.go holds the reader's primitives (a read-ahead window over a
// ReaderAt that checks every length against what is left of the file),
// parse.go the parser of the index header, quantizer and PQ, rqfile.go the
// residual quantizer of IwRQ files and its codes, lists.go the
// list readers (inline, legacy, on disk) and the lists as an ivf.Source,
// import.go the entry points that build an index, write.go the writer.
//
// # Invariants
//
// A damaged file is an error wrapping ivf.ErrCorrupt that names the file,
// the field and its byte offset; a file of a kind this package does not
// read is ErrUnsupported naming the FAISS class; never a panic, and no
// allocation larger than the file. Lists are streamed one at a time with
// positioned reads, so a file larger than memory imports. Files written
// go to path.tmp, fsynced, then renamed.
//
// The package builds indexes through ivf's public API only (NewTrained,
// CreateFrom, which owns the index directory and its id bookkeeping) and
// reads them through it (Params, Centroids, PQ, RQ, Lists). It imports
// ivf/, pq/, rq/ and internal/...; never store/.
//
// IVF-RQ codes are Shelf's when FAISS stored ST_norm_cqint8 norms (M layer
// bytes, a byte of 256 norm levels; levels sorted and norm bytes
// renumbered if FAISS's are not ascending). Codes of other search types
// (ST_decompress, FAISS's default, ST_norm_float, qint8, ...) are
// re-encoded on import: their layer bytes are kept and their norm byte is
// derived from the decoded residual against 256 levels trained on a
// sample of at most 65,536 decoded norms, so Shelf then scores them with
// 8-bit norms where FAISS used exact or other ones. Exports are always
// ST_norm_cqint8.
package faissio
