// Package pq implements a product quantizer, the Go counterpart of
// faiss::ProductQuantizer (faiss/impl/ProductQuantizer.h) with 8-bit codes:
// a D-dimensional vector is cut into M sub-vectors of Dsub = D/M dimensions,
// each replaced by the index of its nearest of Ksub = 256 sub-centroids, so a
// vector is stored in M bytes. Distances from a query to encoded vectors are
// computed asymmetrically (ADC): the query's distance to every sub-centroid
// is tabulated once (ComputeDistanceTable) and the distance to a code is the
// sum of M table entries, which ScanL2 and ScanTopK evaluate for many codes.
//
// # Layout
//
// The scan follows the hash/crc32 layout: scan.go holds the contract,
// scan_generic.go the reference Go loop and unrolled Go loops, scan_amd64.{go,s}
// an AVX+FMA assembly scan chosen at run time (scalar table lookups spread
// over four accumulators and two kinds of FP pipe; AVX2/AVX-512 gathers were
// measured slower on AMD Zen 5), and scan_other.go routes other
// architectures to the unrolled Go loops.
//
// # Invariants
//
//   - Centroids has M*Ksub*Dsub floats, laid out like FAISS: sub-quantizer m,
//     then centroid k, then its Dsub coordinates.
//   - A code is M bytes, byte m being the centroid index in sub-space m
//     (CodeSize() == M for 8-bit codes).
//   - Tables have M*Ksub floats, entry m*Ksub+k for centroid k of sub-space m.
//   - The fast and generic scans agree to float32 rounding (relative 1e-5);
//     they only differ in summation order.
//   - UnmarshalBinary never panics: malformed input yields an error wrapping
//     ErrCorrupt.
//
// # Imports
//
// The standard library, golang.org/x/sys/cpu, kmeans and internal/vecmath.
package pq
