// Package gpu scans inverted lists of an IVF-PQ index on a CUDA GPU:
// a block of queries at a time, each probed list uploaded once per block,
// pair tables built on the GPU from the per-query and per-list terms, and
// per-query top-k selected on the GPU, so that only k results per query
// come back.
//
// The GPU code is built only with -tags cuda: gorgonia.org/cu ends the
// process in its init when no GPU is present, so it is imported by
// //go:build cuda files only. Without the tag the package still compiles
// (Available reports false, NewScanner returns ErrNoCUDA) and nothing in
// the module links against CUDA.
//
// gpu may import pq only (it sits below ivf), so it cannot name
// ivf.ScanRequest. Request has exactly the fields of ivf.ScanRequest,
// all of unnamed types, so a package that imports both converts with
// (*gpu.Request)(req) and wraps a *Scanner into an ivf.Scanner in a few
// lines (see the package's tests).
package gpu
