package tools

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("demo", "build and search an on-disk IVF-PQ index of built-in synthetic data", runDemo)
}

func runDemo(env *Env) error {
	fs := newFlags(env, "demo", "demo [--n 200000] [--dim 64] [--nq 1000] [--dir DIR] [--json]",
		"shelf demo\nshelf demo --n 1000000 --dim 128 --dir /tmp/idx")
	n := fs.Int("n", 200_000, "vectors in the synthetic data set")
	dim := fs.Int("dim", 64, "dimension")
	nq := fs.Int("nq", 1000, "queries")
	nlist := fs.Int("nlist", 0, "lists (default: about 4 sqrt(n), a power of two)")
	m := fs.Int("m", 0, "PQ bytes per vector (default: dim/4)")
	dir := fs.String("dir", "", "index directory (default: a temporary one, removed afterwards)")
	seed := fs.Int64("seed", 1, "seed of data and training")
	asJSON := fs.Bool("json", false, "print one JSON object per nprobe instead of a table")
	quiet := fs.Bool("quiet", false, "no progress bars")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *n < 1000 || *dim < 1 || *nq < 1 {
		return fmt.Errorf("%w: --n must be at least 1000, --dim and --nq positive", errUsage)
	}
	if err := checkDemoSizes(*n, *dim, *nq, *nlist, *m); err != nil {
		return err
	}
	if *nlist == 0 {
		*nlist = min(1<<int(math.Round(math.Log2(4*math.Sqrt(float64(*n))))), demoMaxLists)
	}
	if *m == 0 {
		*m = max(1, *dim/4)
		for *dim%*m != 0 {
			*m--
		}
	}
	root := *dir
	if root == "" {
		tmp, err := os.MkdirTemp("", "shelf-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		root = filepath.Join(tmp, "index")
	}
	out := env.Stdout
	factory := fmt.Sprintf("IVF%d,PQ%d", *nlist, *m)
	if !*asJSON {
		fmt.Fprintf(out, "shelf demo: %s on %d x %d synthetic clustered vectors, %d queries, index in %s\n\n", factory, *n, *dim, *nq, root)
	}

	t0 := time.Now()
	clusters := max(10, *n/200)
	base := synth.Clustered(*n, *dim, clusters, *seed)
	queries := synth.Queries(*nq, *dim, clusters, *seed)
	gt, _, err := groundtruth.KNN(base, queries, 10, groundtruth.L2, 0)
	if err != nil {
		return err
	}
	genS := time.Since(t0).Seconds()

	ix, err := ivf.NewFromFactory(factory, *dim, ivf.L2)
	if err != nil {
		return err
	}
	bars := map[string]interface {
		Set(int64, int64)
		Finish()
	}{}
	ix.Progress = func(stage string, done, total int64) {
		b, ok := bars[stage]
		if !ok {
			b = bar(env, *quiet || *asJSON, stage, "", total)
			bars[stage] = b
		}
		b.Set(done, 0)
		if done >= total {
			b.Finish()
		}
	}
	t0 = time.Now()
	if err := ix.Train(base.Data, base.N, &ivf.TrainOptions{Seed: *seed}); err != nil {
		return err
	}
	trainS := time.Since(t0).Seconds()
	if err := ix.ToDisk(root); err != nil {
		return err
	}
	t0 = time.Now()
	if _, err := ix.Add(base.Data, base.N); err != nil {
		return err
	}
	addS := time.Since(t0).Seconds()
	if err := ix.Close(); err != nil {
		return err
	}
	// Search the index as a separate reader would: opened read-only.
	ro, err := ivf.OpenReadOnly(root)
	if err != nil {
		return err
	}
	defer ro.Close()
	if !*asJSON {
		fmt.Fprintf(out, "  data + exact ground truth %6.2f s\n", genS)
		fmt.Fprintf(out, "  train                     %6.2f s\n", trainS)
		fmt.Fprintf(out, "  add to the on-disk index  %6.2f s  (%.0f vectors/s, durable)\n\n", addS, float64(*n)/addS)
		fmt.Fprintf(out, "  %6s %10s %8s %8s\n", "nprobe", "QPS", "R@1", "R@10")
	}
	for _, np := range []int{1, 2, 4, 8, 16, 32, 64} {
		if np > *nlist {
			break
		}
		best := 0.0
		var ids []int64
		for rep := 0; rep < 2; rep++ {
			t := time.Now()
			_, ids, err = ro.Search(queries.Data, queries.N, 10, np)
			if err != nil {
				return err
			}
			best = max(best, float64(queries.N)/time.Since(t).Seconds())
		}
		r1 := groundtruth.Recall(ids, 10, gt, 10, queries.N, 1)
		r10 := groundtruth.Recall(ids, 10, gt, 10, queries.N, 10)
		if *asJSON {
			b, _ := json.Marshal(map[string]any{"factory": factory, "n": *n, "dim": *dim, "nprobe": np, "qps": math.Round(best), "recall1": r1, "recall10": r10})
			fmt.Fprintln(out, string(b))
			continue
		}
		fmt.Fprintf(out, "  %6d %10.0f %8.3f %8.3f\n", np, best, r1, r10)
	}
	if !*asJSON {
		fmt.Fprintf(out, "\n  recall@R: share of queries whose true nearest neighbour is among the first R results\n")
	}
	return nil
}

// Limits of the demo's index (those of package ivf).
const (
	demoMaxDim   = 1 << 16
	demoMaxLists = 1 << 26
)

// checkDemoSizes checks the demo's sizes against each other, the index's
// limits and the memory they imply, before any data is generated.
func checkDemoSizes(n, dim, nq, nlist, m int) error {
	switch {
	case dim > demoMaxDim:
		return fmt.Errorf("%w: --dim %d: at most %d", errUsage, dim, demoMaxDim)
	case nlist < 0 || nlist > min(n, demoMaxLists):
		return fmt.Errorf("%w: --nlist %d: want 1 to min(--n, %d) = %d (0: about 4 sqrt(n))", errUsage, nlist, demoMaxLists, min(n, demoMaxLists))
	case m < 0 || m > dim || (m > 0 && dim%m != 0):
		return fmt.Errorf("%w: --m %d: want a divisor of --dim %d (0: about dim/4)", errUsage, m, dim)
	}
	// The demo searches all queries at once for 10 results each.
	if _, ok := vecmath.ResultCount(nq, 10); !ok {
		return fmt.Errorf("%w: --nq %d: at most %d queries (10 results each)", errUsage, nq, vecmath.MaxResults/10)
	}
	// What the demo holds at its peak, in float64 so nothing overflows:
	// the data and queries (4 bytes a component), about twice the data
	// again while training (sample, residuals), codes and ids, the ground
	// truth and the results, the centroids.
	need := 3*float64(n)*float64(dim)*4 + float64(n)*(float64(dim)+16) +
		float64(nq)*(float64(dim)*4+10*24) + float64(max(nlist, 1))*float64(dim)*8
	if mem := machineMemory(); mem > 0 && need > float64(mem) {
		return fmt.Errorf("%w: --n %d --dim %d --nq %d need about %s of memory, this machine has %s",
			errUsage, n, dim, nq, gib(need), gib(float64(mem)))
	}
	return nil
}
