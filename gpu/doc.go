// Package gpu scans inverted lists of an IVF-PQ index on CUDA GPUs. A
// *Scanner is an ivf.Scanner: ix.SearchWith(q, nq, k, nprobe, scanner)
// runs the coarse step and the query tables on the CPU and the list scan
// on the GPU, with results equal to Search's.
//
// Per block of queries (plan.go): each probed list is read once from the
// store, however many queries probe it, and cut into work items of at
// most Options.ItemCodes codes per probing query. The lists stream to the
// GPU in chunks through two pipeline slots, each a page-locked staging
// buffer, a device buffer and a stream: while one chunk is uploaded and
// scanned, the host copies the next from the mmap'd store into the other
// slot, so device memory for lists is 2 x Options.ChunkBytes whatever the
// block probes. One thread block per item builds the pair's distance
// table in shared memory (per-query term + per-list term + coarse term)
// and keeps its k best; one block per query merges its items' results,
// and only k results per query come back.
//
// NewShardedScanner spreads each block's lists over several scanners
// (all visible GPUs, and optionally several logical shards per GPU) and
// merges their results (ivf.ShardedScanner).
//
// The GPU code is built only with -tags cuda: gorgonia.org/cu ends the
// process in its init when no GPU is present, so it is imported by
// //go:build cuda files only. Without the tag the package still compiles
// (Available reports false, the constructors return ErrNoCUDA) and
// nothing in the module links against CUDA. The kernels are CUDA C in
// kernels/scan.cu, compiled by kernels/gen.sh to PTX that is committed
// and embedded, so building needs no nvcc.
package gpu
