// Package kmeans trains k-means centroids with Lloyd's algorithm, the Go
// counterpart of faiss::Clustering (faiss/Clustering.h) as used to train the
// coarse quantizer of an IVF index and the sub-quantizers of a product
// quantizer.
//
// It mirrors FAISS's choices so that indexes trained here behave like FAISS
// ones: at most MaxPointsPerCentroid*K training points (a seeded random
// subsample beyond that), initial centroids drawn as distinct random training
// points, the batched nearest-centroid assignment of
// faiss::exhaustive_L2sqr_blas, and empty clusters repaired by splitting a
// large one (faiss split_clusters).
//
// # Invariants
//
//   - With Config.Balance > 0 the assignment step is balanced k-means:
//     Sinkhorn potentials computed on a bounded sample (at most 64 points
//     per centroid and 2^25 distances) offset each centroid's distances,
//     and every point goes to its least offset distance. Memory never
//     holds n x K distances. Sinkhorn (sinkhorn.go) is also exported for
//     assignments from a distance matrix of the caller's.
//   - Train never panics on bad input: shapes, K and non-finite values are
//     reported as errors wrapping ErrInvalidInput.
//   - Train is deterministic for a given input, Config.Seed and
//     Config.Threads: the assignment of a point does not depend on how points
//     are spread over goroutines, and centroid sums are accumulated in point
//     order in float64.
//   - After every centroid update no cluster is left empty while some
//     cluster holds two or more points: empty ones are re-seeded by
//     splitting the largest (at least one centroid must differ from the
//     others, so data with fewer distinct points than K keeps duplicates).
//
// # Imports
//
// The standard library and internal/vecmath only.
package kmeans
