// Command listbalance reports how even the inverted lists of an index are
// and what that costs a search: the imbalance factor and largest list
// (as shelf stats), the codes scanned per query at one nprobe (mean, p50,
// p99, max: the sum of the sizes of the lists a query probes, counted as
// the lists are handed to the scanner), and R@k / I@k against a ground
// truth (as shelf search). One JSON object per index on stdout.
//
//	go run ./bench/listbalance --queries q.fvecs --gt gt.ivecs --nprobe 16 idx1 idx2
//
// It may import anything of the project (benchmarks measure it all).
package main
