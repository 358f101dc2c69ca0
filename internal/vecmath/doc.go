// Package vecmath holds the float32 kernels that the vector index spends its
// time in: dot products, squared L2 distances, blocked inner-product matrices
// and nearest-centroid search (the Go counterpart of FAISS's
// faiss/utils/distances.h: fvec_inner_product, fvec_L2sqr,
// exhaustive_L2sqr_blas and knn_L2sqr).
//
// # Layout
//
// The package follows the hash/crc32 layout: vecmath.go states the portable
// contract, *_generic.go holds a pure Go implementation that is always
// compiled (and used as the reference in tests), kernels_amd64.{go,s} hold
// the fast paths chosen at run time with golang.org/x/sys/cpu (AVX2+FMA
// kernels for every function, and an AVX-512 nearest-centroid kernel that
// keeps the running minima of 8 rows in registers), and kernels_other.go
// routes the other architectures to the generic code.
//
// The matrix kernels first transpose y into panels of 16 columns
// (d rows of 16 floats), so the inner loop multiplies one broadcast x value
// by a contiguous vector of 16 y values: a BLAS-style micro-kernel with a
// 4x16 (AVX2) or 8x16 (AVX-512) tile of accumulators in registers and no
// horizontal sums. Panels are processed in chunks sized for L2 while x rows
// stream past them.
//
// # Invariants
//
//   - Matrices are dense row-major float32 slices: row i of an n x d matrix
//     is x[i*d : (i+1)*d].
//   - Every result for one x row depends only on that row and on y, never on
//     how rows are split into blocks or goroutines, so callers get the same
//     answer for any thread count.
//   - The fast and the generic paths agree to within float32 rounding
//     (relative 1e-4 on the inputs the tests draw); they may differ in the
//     last bits because the fast path fuses multiply-adds and sums in a
//     different order.
//   - Squared distances computed through norms are clamped at 0.
//
// # Imports
//
// The standard library and golang.org/x/sys/cpu only. Everything else in the
// module may import vecmath; vecmath imports nothing of the module.
package vecmath
