package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shelfdb/shelf/gpu"
	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("search", "search an index with a query file: QPS and recall per nprobe", runSearch)
}

// searchResult is one line of --json output; the recalls are pointers so
// that they are left out, not printed as 0, without ground truth.
type searchResult struct {
	// Index is the index directory as given: shelf plot names the curve
	// after it.
	Index  string  `json:"index"`
	NProbe int     `json:"nprobe"`
	K      int     `json:"k"`
	QPS    float64 `json:"qps"`
	// Recall1 and RecallK are FAISS's 1-recall@1 and 1-recall@k: the
	// share of queries whose true nearest neighbour is among the first 1
	// or k results.
	Recall1 *float64 `json:"recall1,omitempty"`
	RecallK *float64 `json:"recallk,omitempty"`
	// IntersectionK is the intersection recall k-recall@k (what
	// ann-benchmarks and the FAISS tutorial call recall@k): |first k
	// results ∩ true k nearest| / k, averaged over queries; left out when
	// the ground truth has fewer than k columns.
	IntersectionK *float64 `json:"intersectionk,omitempty"`
	NQ            int      `json:"nq"`
	Threads       int      `json:"threads"`
	GPU           bool     `json:"gpu,omitempty"`
	// With --batch: queries per call, and the latency of a call.
	Batch int     `json:"batch,omitempty"`
	P50MS float64 `json:"p50_ms,omitempty"`
	P99MS float64 `json:"p99_ms,omitempty"`
	// With --memory: the lists' read buffers, and what the search read.
	MemoryBudget  int64   `json:"memory_budget,omitempty"`
	ReadMB        float64 `json:"read_mb,omitempty"`
	ReadMBPerSec  float64 `json:"read_mb_per_s,omitempty"`
	ReadsPerQuery float64 `json:"reads_per_query,omitempty"`
	// CacheHitsPerQuery: probed lists found in the budget's list cache.
	CacheHitsPerQuery float64 `json:"cache_hits_per_query,omitempty"`
}

func runSearch(env *Env) error {
	fs := newFlags(env, "search", "search --index DIR --queries FILE [--k 10] [--nprobe 1,4,16,64] [--gt FILE] [--threads T] [--memory SIZE [--io-depth N] [--buffered-reads]] [--batch N] [--repeat R] [--json] [--out FILE.ivecs] [--gpu [--gpu-shards N] [--gpu-cache-mb MB]]",
		"shelf search --index /tmp/sift --queries sift_query.fvecs --gt sift_groundtruth.ivecs --nprobe 1,4,16,64\nshelf search --index /tmp/sift --queries q.npy --k 100 --nprobe 32 --json --out ids.ivecs\nshelf search --index /big --queries q.fvecs --memory 1GiB --batch 1 --nprobe 16")
	dir := fs.String("index", "", "index directory")
	queries := fs.String("queries", "", "query vectors (.fvecs, .bvecs or .npy)")
	k := fs.Int("k", 10, "results per query")
	nprobeList := fs.String("nprobe", "16", "lists probed per query; a comma list (1,4,16,64) sweeps")
	gtFile := fs.String("gt", "", "ground truth (.ivecs or integer .npy, one row per query, nearest first) for R@1 and R@k (true nearest neighbour in the first 1 or k results) and, with k columns or more, I@k (intersection recall of the first k)")
	threads := fs.Int("threads", 0, "search goroutines (0: all CPUs)")
	asJSON := fs.Bool("json", false, "print one JSON object per nprobe instead of a table")
	outFile := fs.String("out", "", "write the result ids of the last nprobe to this .ivecs file, and their distances to the .fvecs file of the same name beside it (nq rows of k, best first; padding: id -1)")
	memory := fs.String("memory", "", "keep the search within this much memory (1GiB, 512MiB, 300M, bytes): lists are read from disk with direct I/O into buffers of what the model and tables leave (an index larger than RAM); default: through the memory map")
	ioDepth := fs.Int("io-depth", 0, "with --memory: reads in flight (0: 64)")
	buffered := fs.Bool("buffered-reads", false, "with --memory: read through the page cache instead of direct I/O")
	repeat := fs.Int("repeat", 2, "runs per nprobe, the fastest reported (the first also warms the page cache; 1 for a cold run)")
	batch := fs.Int("batch", 0, "queries per search call (1: one query per call), with latency percentiles; 0: all queries in one call")
	useGPU := fs.Bool("gpu", false, "scan the lists on the GPU(s) (a shelf built with -tags cuda)")
	gpuShards := fs.Int("gpu-shards", 1, "with --gpu: logical shards per GPU, each with its own streams and buffers")
	gpuCache := fs.Int64("gpu-cache-mb", 0, "with --gpu: MiB of GPU memory per shard that keep probed lists for later queries (0: stream every time)")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *dir == "" || *queries == "" {
		return fmt.Errorf("%w: --index and --queries are required", errUsage)
	}
	if err := checkK(*k, 0, ""); err != nil {
		return err
	}
	if err := checkThreads(*threads); err != nil {
		return err
	}
	if *gpuShards < 1 || *gpuShards > maxGPUShards || *gpuCache < 0 || *gpuCache > maxGPUCacheMB {
		return fmt.Errorf("%w: --gpu-shards %d, --gpu-cache-mb %d: want 1 to %d shards and 0 to %d MiB",
			errUsage, *gpuShards, *gpuCache, maxGPUShards, maxGPUCacheMB)
	}
	var memLimit int64
	if *memory != "" {
		var err error
		if memLimit, err = parseBytes(*memory); err != nil {
			return fmt.Errorf("%w: --memory: %v", errUsage, err)
		}
	}
	if *ioDepth < 0 || *ioDepth > maxIODepth || *batch < 0 || *repeat < 1 || *repeat > 100 {
		return fmt.Errorf("%w: --io-depth %d, --batch %d, --repeat %d: want 0 to %d reads, 0 or more queries, 1 to 100 runs", errUsage, *ioDepth, *batch, *repeat, maxIODepth)
	}
	if *outFile != "" && !strings.HasSuffix(strings.ToLower(*outFile), ".ivecs") {
		return fmt.Errorf("%w: --out %q must end in .ivecs", errUsage, *outFile)
	}
	if *outFile != "" {
		// The distances go to FILE.fvecs: never over an input.
		for _, in := range []string{*queries, *gtFile} {
			if in != "" && searchSameFile(in, searchDistFile(*outFile)) {
				return fmt.Errorf("%w: --out %s would write the distances over %s", errUsage, *outFile, in)
			}
		}
	}
	nprobes, err := searchParseNprobes(*nprobeList)
	if err != nil {
		return err
	}
	calls := *batch
	q, err := vecio.ReadFloat32(*queries)
	if err != nil {
		return err
	}
	if q.N == 0 {
		return fmt.Errorf("%s holds no queries", *queries)
	}
	if err := checkK(*k, q.N, *queries); err != nil {
		return err
	}
	var gt []int64
	kGT := 0
	if *gtFile != "" {
		var n int
		n, kGT, gt, err = vecio.ReadInt64(*gtFile)
		if err != nil {
			return err
		}
		if n != q.N {
			return fmt.Errorf("%s has %d rows but %s has %d queries", *gtFile, n, *queries, q.N)
		}
		if kGT < 1 {
			return fmt.Errorf("%s has no columns", *gtFile)
		}
	}
	ix, err := openReadOnly(env, "search", *dir)
	if err != nil {
		return err
	}
	defer ix.Close()
	p := ix.Params()
	if q.D != p.D {
		return fmt.Errorf("%s has dimension %d but the index in %s has dimension %d", *queries, q.D, *dir, p.D)
	}
	ix.Threads = *threads
	if calls == 0 || calls > q.N {
		calls = q.N
	}
	if memLimit > 0 {
		if err := searchBudget(ix, memLimit, &q, calls, *k, slices.Max(nprobes), *outFile != ""); err != nil {
			return err
		}
		ix.IODepth, ix.BufferedReads = *ioDepth, *buffered
	}
	var scanner ivf.Scanner
	if *useGPU {
		sc, err := gpu.NewShardedScanner(nil, *gpuShards, gpu.Options{HostThreads: *threads, CacheBytes: *gpuCache << 20})
		if errors.Is(err, gpu.ErrNoCUDA) {
			return fmt.Errorf("--gpu: %w (build shelf with: go build -tags cuda ./tools/shelf, on a machine with a CUDA GPU)", err)
		}
		if err != nil {
			return fmt.Errorf("--gpu: %w", err)
		}
		defer sc.Close()
		scanner = sc
	}
	nthreads := *threads
	if nthreads == 0 {
		nthreads = runtime.GOMAXPROCS(0)
	}
	// R@k needs the first column only (1-recall@R), so a ground truth
	// narrower than k is fine; R@k is then still over the top k found.
	// I@k (intersection recall) needs the true k nearest.
	withI := gt != nil && kGT >= *k
	out := env.Stdout
	if !*asJSON {
		where := fmt.Sprintf("%d threads", nthreads)
		if scanner != nil {
			where += fmt.Sprintf(", lists scanned on %d GPU shard(s)", scanner.(*ivf.ShardedScanner).Shards())
		}
		if memLimit > 0 {
			where += fmt.Sprintf(", lists read from disk into %s of buffers (--memory %s)", statsBytes(ix.MemoryBudget), *memory)
		}
		if calls < q.N {
			where += fmt.Sprintf(", %d %s per call", calls, plural(calls, "query", "queries"))
		}
		fmt.Fprintf(out, "%s: %s, %s, %d vectors; %d queries, k=%d, %s\n\n", *dir, p.Factory(), p.Metric, ix.NTotal(), q.N, *k, where)
		fmt.Fprintf(out, "  %6s %10s", "nprobe", "QPS")
		if gt != nil {
			fmt.Fprintf(out, " %8s %8s", "R@1", fmt.Sprintf("R@%d", *k))
		}
		if withI {
			fmt.Fprintf(out, " %8s", fmt.Sprintf("I@%d", *k))
		}
		if calls < q.N {
			fmt.Fprintf(out, " %9s %9s", "p50 ms", "p99 ms")
		}
		if memLimit > 0 {
			fmt.Fprintf(out, " %10s %9s", "MB/s read", "KB/query")
		}
		fmt.Fprintln(out)
	}
	var ids []int64
	var dists []float32
	done := map[int]bool{}
	for _, np := range nprobes {
		// Probing more lists than there are is probing all of them: one
		// line for all such values, not a repeated one.
		np = min(np, p.NList)
		if done[np] {
			continue
		}
		done[np] = true
		// Best of --repeat runs: the first also warms the page cache (or,
		// with --memory, every run reads everything from disk).
		best := 0.0
		var lat []time.Duration
		var readBytes, reads, hits int64
		var readTime time.Duration
		for rep := 0; rep < *repeat; rep++ {
			r0, b0 := ix.ReadStats()
			h0, _ := ix.CacheStats()
			var l []time.Duration
			t := time.Now()
			dists, ids, l, err = searchCalls(ix, scanner, &q, calls, *k, np, *outFile != "")
			if err != nil {
				return err
			}
			el := time.Since(t)
			if qps := float64(q.N) / max(el.Seconds(), 1e-9); qps > best {
				best, lat = qps, l
				r1, b1 := ix.ReadStats()
				h1, _ := ix.CacheStats()
				reads, readBytes, readTime, hits = r1-r0, b1-b0, el, h1-h0
			}
		}
		res := searchResult{Index: *dir, NProbe: np, K: *k, QPS: math.Round(best), NQ: q.N, Threads: nthreads, GPU: scanner != nil}
		if gt != nil {
			r1 := groundtruth.Recall(ids, *k, gt, kGT, q.N, 1)
			rk := groundtruth.Recall(ids, *k, gt, kGT, q.N, *k)
			res.Recall1, res.RecallK = &r1, &rk
		}
		if withI {
			ik := groundtruth.IntersectionRecall(ids, *k, gt, kGT, q.N, *k)
			res.IntersectionK = &ik
		}
		if calls < q.N {
			res.Batch = calls
			res.P50MS, res.P99MS = percentileMS(lat, 0.50), percentileMS(lat, 0.99)
		}
		if memLimit > 0 {
			res.MemoryBudget = ix.MemoryBudget
			res.ReadMB = math.Round(float64(readBytes)/1e4) / 100
			res.ReadMBPerSec = math.Round(float64(readBytes) / 1e6 / max(readTime.Seconds(), 1e-9))
			res.ReadsPerQuery = math.Round(100*float64(reads)/float64(q.N)) / 100
			res.CacheHitsPerQuery = math.Round(100*float64(hits)/float64(q.N)) / 100
		}
		if *asJSON {
			b, err := json.Marshal(res)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(b))
			continue
		}
		fmt.Fprintf(out, "  %6d %10.0f", np, res.QPS)
		if gt != nil {
			fmt.Fprintf(out, " %8.3f %8.3f", *res.Recall1, *res.RecallK)
		}
		if withI {
			fmt.Fprintf(out, " %8.3f", *res.IntersectionK)
		}
		if calls < q.N {
			fmt.Fprintf(out, " %9.3f %9.3f", res.P50MS, res.P99MS)
		}
		if memLimit > 0 {
			fmt.Fprintf(out, " %10.0f %9.1f", res.ReadMBPerSec, float64(readBytes)/1e3/float64(q.N))
		}
		fmt.Fprintln(out)
	}
	if !*asJSON && gt != nil {
		fmt.Fprintf(out, "\n  R@R: share of queries whose true nearest neighbour is among the first R results (FAISS's 1-recall@R)\n")
		if withI {
			fmt.Fprintf(out, "  I@%d: intersection recall, |first %d results ∩ true %d nearest| / %d, averaged over queries (recall@%d of ann-benchmarks and the FAISS tutorial)\n",
				*k, *k, *k, *k, *k)
		} else {
			fmt.Fprintf(out, "  I@%d (intersection recall) not shown: it needs the true %d nearest of each query, and %s has %d\n", *k, *k, *gtFile, kGT)
		}
	}
	if sc, ok := scanner.(*ivf.ShardedScanner); ok && !*asJSON {
		for i := range sc.Shards() {
			if g, ok := sc.Shard(i).(*gpu.Scanner); ok {
				st := g.Stats()
				fmt.Fprintf(out, "  GPU shard %d: %d blocks, %.1f MB of lists uploaded in %d chunks (copy %v, wait %v), %.1f MB of list tables; cache %d hits, %d misses, %d evicted, %.1f MB held\n",
					i, st.Blocks, float64(st.ListBytes)/1e6, st.Chunks, st.Stage.Round(time.Millisecond), st.Wait.Round(time.Millisecond), float64(st.TableBytes)/1e6,
					st.Cache.Hits, st.Cache.Misses, st.Cache.Evicted, float64(st.Cache.UsedBytes)/1e6)
			}
		}
	}
	if *outFile != "" {
		ids32 := make([]int32, len(ids))
		for i, id := range ids {
			if id > math.MaxInt32 || id < math.MinInt32 {
				return fmt.Errorf("id %d does not fit the int32 of %s", id, *outFile)
			}
			ids32[i] = int32(id)
		}
		if err := vecio.WriteIvecs(*outFile, q.N, *k, ids32); err != nil {
			return err
		}
		if err := vecio.WriteFvecs(searchDistFile(*outFile), vecio.Matrix{N: q.N, D: *k, Data: dists}); err != nil {
			return err
		}
	}
	return nil
}

// searchSameFile reports whether a and b name one file: the same path,
// or two paths to one existing file.
func searchSameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// searchDistFile is where --out FILE.ivecs puts the distances: FILE.fvecs.
func searchDistFile(ivecs string) string {
	return ivecs[:len(ivecs)-len(".ivecs")] + ".fvecs"
}

// Bounds of the --gpu flags: more shards than a GPU has streams to give
// buys nothing, and the cache is at most a GPU's memory (MiB, so that the
// byte count fits an int64).
const (
	maxGPUShards  = 64
	maxGPUCacheMB = 1 << 24
)

// searchParseNprobes reads "16" or "1,4,16,64"; a bad list is a command
// line error (exit 2), caught before any file is read.
func searchParseNprobes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%w: --nprobe %q: want positive integers separated by commas", errUsage, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// searchCalls searches q in calls of calls queries each (1 <= calls <= q.N) and returns the
// ids of all of them (and their distances if keepDist) and the duration of
// each call.
func searchCalls(ix *ivf.Index, scanner ivf.Scanner, q *vecio.Matrix, calls, k, nprobe int, keepDist bool) ([]float32, []int64, []time.Duration, error) {
	var dists []float32
	if keepDist {
		dists = make([]float32, 0, q.N*k)
	}
	ids := make([]int64, 0, q.N*k)
	lat := make([]time.Duration, 0, (q.N+calls-1)/calls)
	for lo := 0; lo < q.N; lo += calls {
		hi := min(lo+calls, q.N)
		part := q.Data[lo*q.D : hi*q.D]
		t := time.Now()
		var d []float32
		var got []int64
		var err error
		if scanner != nil {
			d, got, err = ix.SearchWith(part, hi-lo, k, nprobe, scanner)
		} else {
			d, got, err = ix.Search(part, hi-lo, k, nprobe)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		lat = append(lat, time.Since(t))
		if keepDist {
			dists = append(dists, d...)
		}
		ids = append(ids, got...)
	}
	return dists, ids, lat, nil
}

// percentileMS returns the p-quantile of d in milliseconds.
func percentileMS(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)
	return math.Round(float64(s[max(i, 0)].Microseconds())) / 1000
}

// searchRuntimeReserve is what a search process takes besides the index's
// model, tables, results and list buffers: the program's pages, the Go
// runtime, goroutine stacks, the garbage collector's slack.
const searchRuntimeReserve = 32 << 20

// searchGCSlack: 1/searchGCSlack of what --memory leaves to the read
// buffers is left free for the garbage collector instead. The read buffers are live heap for the whole
// search; with the heap at the Go memory limit every allocation of a
// block (tables, heaps) started a collection: 293 of them in a 3.3 s
// search under a 1 GiB cap (GODEBUG=gctrace=1), their marking taking
// CPU from the scan.
const searchGCSlack = 16

// searchBudget gives the index's lists what memLimit leaves after the
// queries, the model and tables of a search (ivf.Index.SearchMemory) and
// the runtime, and asks the Go runtime to stay within memLimit; an index
// that cannot be searched in memLimit is an error saying what it needs.
// The results of all queries are kept: ids, and distances with keepDist.
func searchBudget(ix *ivf.Index, memLimit int64, q *vecio.Matrix, calls, k, nprobe int, keepDist bool) error {
	perResult := int64(8)
	if keepDist {
		perResult += 4
	}
	fixed := ix.SearchMemory(calls, k, nprobe) + int64(len(q.Data))*4 + int64(q.N)*int64(k)*perResult + searchRuntimeReserve
	fixed += max(memLimit-fixed, 0) / searchGCSlack
	const minBuffers = 4 << 20
	if memLimit-fixed < minBuffers {
		return fmt.Errorf("%w: --memory %s: this search needs %s besides the lists' buffers (model, tables, queries, results, runtime), and at least %s of buffers",
			errUsage, statsBytes(memLimit), statsBytes(fixed), statsBytes(minBuffers))
	}
	ix.MemoryBudget = memLimit - fixed
	// The Go runtime's share: what memLimit leaves to the program's
	// pages in the page cache (a cgroup counts them too).
	debug.SetMemoryLimit(memLimit - searchProgramPages)
	return nil
}

// searchProgramPages is the page cache the program's own file takes
// while it runs (the part of the binary a search touches).
const searchProgramPages = 20 << 20

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
