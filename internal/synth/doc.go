// Package synth generates the project's built-in data set: seeded Gaussian
// mixtures shaped like real embedding collections, so that every test,
// benchmark and demo can run without downloading SIFT1M or Deep1B.
//
// # What it owns
//
// The mixture model and its random streams. A Mixture is fixed by
// (dimension, number of clusters, seed): cluster centres drawn from N(0, 1)
// per coordinate, log-normal cluster weights (so a few clusters are large
// and many are small, and inverted lists built on the data are imbalanced the
// way they are on real data), and a per-cluster noise level sigma in
// [0.3, 0.8] per coordinate. A point is its cluster's centre plus isotropic
// N(0, sigma^2) noise: a point lies about sigma*sqrt(d) from its centre,
// while centres lie about sqrt(2d) apart, so nearest neighbours are
// dominated by cluster membership (meaningful) yet within a cluster the
// contrast between near and far neighbours is small (not trivial).
//
// One experiment samples its base set and its query set from the same
// Mixture through different streams (BaseStream, QueryStream, ...), so
// queries come from the base distribution without duplicating base points.
//
// # Invariants
//
//   - Output is a pure function of (d, nclusters, seed, stream, n): the
//     same arguments give bit-identical matrices on every run, for every
//     GOMAXPROCS and thread count, because rows are generated in fixed
//     chunks of chunkRows, each from its own PCG seeded from
//     (seed, stream, chunk index).
//   - Samples are prefix-stable: the first m rows of Sample(n, s) are
//     Sample(m, s) for m <= n, so growing a data set keeps its head.
//
// # Imports
//
// The standard library, internal/vecio (for the Matrix type) and
// internal/vecmath (for ParallelFor).
package synth
