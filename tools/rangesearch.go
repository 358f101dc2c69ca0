package tools

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shelfdb/shelf/internal/atomicfile"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("range-search", "find every vector within a radius of each query", runRangeSearch)
}

// rangeMaxBatch is the most queries one RangeSearch call takes: the
// index's own block, so each probed list is still read once per block.
const rangeMaxBatch = 1024

// rangeResult is the --json output of range-search.
type rangeResult struct {
	Index   string  `json:"index"`
	Radius  float64 `json:"radius"`
	NProbe  int     `json:"nprobe"`
	NQ      int     `json:"nq"`
	Results int     `json:"results"`
	Counts  []int   `json:"counts"` // results of each query, in query order
	Seconds float64 `json:"seconds"`
}

func runRangeSearch(env *Env) error {
	fs := newFlags(env, "range-search", "range-search --index DIR --queries FILE --radius R [--nprobe N] [--threads T] [--max-results N] [--out FILE.tsv] [--json]",
		"shelf range-search --index /tmp/sift --queries q.fvecs --radius 40000 --nprobe 16 --out neighbours.tsv\n"+
			"shelf range-search --index /tmp/emb --queries q.npy --radius 0.8 --json     # a cosine index: similarity above 0.8")
	dir := fs.String("index", "", "index directory")
	queries := fs.String("queries", "", "query vectors (.fvecs, .bvecs or .npy)")
	radiusS := fs.String("radius", "", "the radius: results have a squared L2 distance below it (l2), or an inner product / cosine similarity above it (ip, cosine)")
	nprobe := fs.Int("nprobe", 16, "lists probed per query")
	threads := fs.Int("threads", 0, "search goroutines (0: all CPUs)")
	maxResults := fs.Int("max-results", 10_000_000, fmt.Sprintf("stop with an error past this many results in all (at most %d)", vecmath.MaxResults))
	outFile := fs.String("out", "", "write the results to this text file: one line per result, \"query<TAB>id<TAB>distance\", queries in file order (0-based), each query's results best first")
	asJSON := fs.Bool("json", false, "print one JSON object (with the result count of every query) instead of a summary")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *dir == "" || *queries == "" || *radiusS == "" {
		return fmt.Errorf("%w: --index, --queries and --radius are required", errUsage)
	}
	radius, err := strconv.ParseFloat(strings.TrimSpace(*radiusS), 64)
	if err != nil || math.IsNaN(radius) || math.Abs(radius) > math.MaxFloat32 {
		return fmt.Errorf("%w: --radius %q: want a finite number", errUsage, *radiusS)
	}
	if *nprobe < 1 {
		return fmt.Errorf("%w: --nprobe %d: want 1 or more", errUsage, *nprobe)
	}
	if err := checkThreads(*threads); err != nil {
		return err
	}
	if *maxResults < 1 || *maxResults > vecmath.MaxResults {
		return fmt.Errorf("%w: --max-results %d: want 1 to %d", errUsage, *maxResults, vecmath.MaxResults)
	}
	if *outFile != "" && searchSameFile(*outFile, *queries) {
		return fmt.Errorf("%w: --out %s would overwrite the queries", errUsage, *outFile)
	}
	q, err := vecio.ReadFloat32(*queries)
	if err != nil {
		return err
	}
	if q.N == 0 {
		return fmt.Errorf("%s holds no queries", *queries)
	}
	ix, err := openReadOnly(env, "range-search", *dir)
	if err != nil {
		return err
	}
	defer ix.Close()
	p := ix.Params()
	if q.D != p.D {
		return fmt.Errorf("%s has dimension %d but the index in %s has dimension %d", *queries, q.D, *dir, p.D)
	}
	ix.Threads = *threads

	// One call would hold every result before the bound could be checked:
	// queries go in batches sized from the results per query seen so far,
	// so the bound is checked after each batch and overshot by little.
	t0 := time.Now()
	all := &ivf.RangeResult{Lims: make([]int, 1, q.N+1)}
	batch := min(q.N, 16)
	for lo := 0; lo < q.N; {
		hi := min(lo+batch, q.N)
		r, err := ix.RangeSearch(q.Data[lo*q.D:hi*q.D], hi-lo, float32(radius), *nprobe)
		if err != nil {
			return err
		}
		if len(all.IDs)+len(r.IDs) > *maxResults {
			return fmt.Errorf("%w: more than --max-results %d results within radius %v of the first %d queries: give a tighter --radius or a larger --max-results",
				errUsage, *maxResults, radius, hi)
		}
		base := len(all.IDs)
		for _, l := range r.Lims[1:] {
			all.Lims = append(all.Lims, base+l)
		}
		all.IDs = append(all.IDs, r.IDs...)
		all.Dist = append(all.Dist, r.Dist...)
		lo = hi
		batch = rangeMaxBatch
		if perQuery := float64(len(all.IDs)) / float64(hi); perQuery > 0 {
			left := float64(*maxResults - len(all.IDs))
			batch = int(min(float64(rangeMaxBatch), max(1, left/(2*perQuery))))
		}
	}
	el := time.Since(t0).Seconds()

	if *outFile != "" {
		if err := rangeWrite(*outFile, all); err != nil {
			return err
		}
	}
	counts := make([]int, q.N)
	for i := range counts {
		counts[i] = all.Lims[i+1] - all.Lims[i]
	}
	if *asJSON {
		b, err := json.Marshal(rangeResult{Index: *dir, Radius: radius, NProbe: min(*nprobe, p.NList), NQ: q.N,
			Results: len(all.IDs), Counts: counts, Seconds: math.Round(el*1e4) / 1e4})
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, string(b))
		return nil
	}
	within := map[ivf.Metric]string{ivf.L2: "squared L2 distance below", ivf.InnerProduct: "inner product above", ivf.Cosine: "cosine similarity above"}[p.Metric]
	sorted := slices.Clone(counts)
	slices.Sort(sorted)
	none, _ := slices.BinarySearch(sorted, 1)
	nthreads := *threads
	if nthreads == 0 {
		nthreads = runtime.GOMAXPROCS(0)
	}
	out := env.Stdout
	fmt.Fprintf(out, "%s: %s, %s, %d vectors; %d queries, %s %v, nprobe %d, %d threads\n",
		*dir, p.Factory(), p.Metric, ix.NTotal(), q.N, within, radius, min(*nprobe, p.NList), nthreads)
	fmt.Fprintf(out, "  results   %d; per query min %d, median %d, mean %.1f, max %d; %d %s with none\n",
		len(all.IDs), sorted[0], sorted[len(sorted)/2], float64(len(all.IDs))/float64(q.N), sorted[len(sorted)-1], none, plural(none, "query", "queries"))
	fmt.Fprintf(out, "  time      %.3f s (%.0f queries/s)\n", el, float64(q.N)/max(el, 1e-9))
	if *outFile != "" {
		fmt.Fprintf(out, "  written   %s\n", *outFile)
	}
	return nil
}

// rangeWrite writes the results as text, one line per result: the query's
// row, the id, the distance (shortest form that reads back as the same
// float32), tab-separated; atomically.
func rangeWrite(path string, r *ivf.RangeResult) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		var line []byte
		for qi := 0; qi+1 < len(r.Lims); qi++ {
			for j := r.Lims[qi]; j < r.Lims[qi+1]; j++ {
				line = strconv.AppendInt(line[:0], int64(qi), 10)
				line = append(line, '\t')
				line = strconv.AppendInt(line, r.IDs[j], 10)
				line = append(line, '\t')
				line = strconv.AppendFloat(line, float64(r.Dist[j]), 'g', -1, 32)
				line = append(line, '\n')
				if _, err := bw.Write(line); err != nil {
					return err
				}
			}
		}
		return bw.Flush()
	})
}
