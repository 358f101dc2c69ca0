// Package rq implements a residual quantizer, the Go counterpart of
// faiss::ResidualQuantizer (faiss/impl/ResidualQuantizer.h) with 8-bit
// codes: a vector is approximated by a sum of M codewords, one from each of
// M codebooks of Ksub = 256 full-dimensional vectors, codebook m encoding
// what codebooks 0..m-1 left (the residual). Training is layer by layer:
// k-means on the residuals of the layers before. Encoding keeps the
// BeamSize best partial codes at every layer (FAISS's max_beam_size, beam
// search; 1 is greedy).
//
// EncodeBalanced is the assignment of the semantic-ID recipes (RQ-KMeans,
// TIGER, LC-Rec): greedy layer by layer, and on the layers given an
// epsilon, a Sinkhorn-Knopp balanced assignment of all the vectors at once
// (kmeans.Sinkhorn), so that the codewords are used about equally and
// fewer items share a code.
//
// # Search by tables
//
// An encoded vector x̂ = sum_m C_m[c_m] has ||q - x̂||^2 = ||q||^2 - 2 sum_m
// <q, C_m[c_m]> + ||x̂||^2. The inner products are a table of M x 256
// entries per query; ||x̂||^2 is not a sum over layers (codewords are not
// orthogonal), so each code stores it in one more byte: the index of the
// nearest of 256 norm levels trained by 1D k-means (FAISS's ST_norm_cqint8
// search type). A code is therefore M+1 bytes and its distance is the sum
// of M+1 table entries, the same sum a PQ code of M+1 bytes has, so the
// PQ scan kernels (pq.ScanTopK) serve RQ codes unchanged.
//
// # Invariants
//
//   - Codebooks has M*Ksub*D floats: layer m, codeword k, its D coordinates
//     (FAISS's codebooks, with codebook_offsets m*256).
//   - A code is M+1 bytes: the M codeword indexes, then the norm level
//     (FAISS's packed code for nbits 8 with ST_norm_cqint8).
//   - NormLevels has 256 floats, ascending.
//   - Tables have (M+1)*Ksub floats; the last sub-table is NormLevels for
//     distance tables and zeros for inner-product tables.
//   - UnmarshalBinary never panics: malformed input yields an error
//     wrapping ErrCorrupt.
//
// # Imports
//
// The standard library, kmeans and internal/vecmath.
package rq
