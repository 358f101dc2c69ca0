package tools

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/vecio"
)

func init() {
	register("groundtruth", "exact k nearest neighbours of queries, as .ivecs for search --gt", runGroundtruth)
}

func runGroundtruth(env *Env) error {
	fs := newFlags(env, "groundtruth", "groundtruth --data FILE --queries FILE --out FILE.ivecs [--k 100] [--metric l2|ip|cosine] [--threads T]",
		"shelf groundtruth --data base.fvecs --queries query.fvecs --k 100 --out gt.ivecs")
	data := fs.String("data", "", "base vectors (.fvecs, .bvecs or .npy)")
	queries := fs.String("queries", "", "query vectors (.fvecs, .bvecs or .npy)")
	k := fs.Int("k", 100, "neighbours per query")
	out := fs.String("out", "", "output .ivecs file: row q holds the row numbers in --data of the k nearest neighbours of query q, nearest first")
	metric := fs.String("metric", "l2", "l2, ip, or cosine (ip on L2-normalized vectors, as an index built with --metric cosine ranks)")
	threads := fs.Int("threads", 0, "goroutines (0: all CPUs)")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *data == "" || *queries == "" || *out == "" {
		return fmt.Errorf("%w: --data, --queries and --out are required", errUsage)
	}
	if err := checkK(*k, 0, ""); err != nil {
		return err
	}
	if err := checkThreads(*threads); err != nil {
		return err
	}
	if !strings.HasSuffix(strings.ToLower(*out), ".ivecs") {
		return fmt.Errorf("%w: --out %q must end in .ivecs", errUsage, *out)
	}
	var m groundtruth.Metric
	cosine := false
	switch strings.ToLower(*metric) {
	case "l2":
		m = groundtruth.L2
	case "ip":
		m = groundtruth.InnerProduct
	case "cosine":
		m, cosine = groundtruth.InnerProduct, true
	default:
		return fmt.Errorf("%w: unknown metric %q (want l2, ip or cosine)", errUsage, *metric)
	}
	// The queries first: they bound --k before the base is read.
	q, err := vecio.ReadFloat32(*queries)
	if err != nil {
		return err
	}
	if q.N > 0 {
		if err := checkK(*k, q.N, *queries); err != nil {
			return err
		}
	}
	base, err := vecio.ReadFloat32(*data)
	if err != nil {
		return err
	}
	if base.N > 0 && q.N > 0 && base.D != q.D {
		return fmt.Errorf("%s has dimension %d but %s has dimension %d", *queries, q.D, *data, base.D)
	}
	if q.N == 0 {
		return fmt.Errorf("%s holds no queries", *queries)
	}
	if cosine {
		if err := gtNormalize(base, *data); err != nil {
			return err
		}
		if err := gtNormalize(q, *queries); err != nil {
			return err
		}
	}
	t0 := time.Now()
	ids, _, err := groundtruth.KNN(base, q, *k, m, *threads)
	if err != nil {
		return err
	}
	ids32 := make([]int32, len(ids))
	for i, id := range ids {
		if id > math.MaxInt32 {
			return fmt.Errorf("row %d of %s does not fit the int32 of .ivecs", id, *data)
		}
		ids32[i] = int32(id)
	}
	if err := vecio.WriteIvecs(*out, q.N, *k, ids32); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s: %d queries x %d neighbours among %d vectors (%s) in %.2f s\n",
		*out, q.N, *k, base.N, *metric, time.Since(t0).Seconds())
	return nil
}

// gtNormalize scales the rows of m to unit length in place, as the index
// does for cosine, so that the inner product ranks by cosine similarity.
func gtNormalize(m vecio.Matrix, name string) error {
	for i := 0; i < m.N; i++ {
		v := m.Row(i)
		var s float64
		for _, a := range v {
			s += float64(a) * float64(a)
		}
		if s == 0 {
			return fmt.Errorf("row %d of %s has norm 0, which has no cosine", i, name)
		}
		inv := float32(1 / math.Sqrt(s))
		for j := range v {
			v[j] *= inv
		}
	}
	return nil
}
