// Package groundtruth computes exact k-nearest neighbours by brute force and
// scores approximate results against them: the reference every recall
// figure of the project is measured against.
//
// # What it owns
//
// KNN, the exact search (faiss::knn_L2sqr / knn_inner_product), and the two
// recall definitions in use in the literature: Recall, FAISS's 1-recall@R,
// and IntersectionRecall, the ann-benchmarks k-recall@k.
//
// # Invariants
//
//   - KNN never holds an nq x n distance matrix: it walks the base in
//     blocks of baseBlock rows and keeps a top-k heap per query, so memory
//     is O(nq*k + queryBlock*baseBlock) whatever the base size.
//   - Results are sorted best first with ties broken by the lower id, and
//     each query's answer depends only on that query, so the output is
//     identical for every thread count.
//   - L2 distances are squared and computed as ||q||^2 + ||x||^2 - 2<q,x>
//     (clamped at 0), as FAISS computes them; inner products are the
//     products themselves, larger being better.
//
// # Imports
//
// The standard library, internal/vecio (for the Matrix type) and
// internal/vecmath (kernels, TopK, ParallelFor).
package groundtruth
