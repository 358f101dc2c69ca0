package tools

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shelfdb/shelf/internal/progress"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("build", "train an IVF-PQ index on a vector file and add all of it, on disk", runBuild)
	register("train", "train an empty on-disk index on a sample (first step of the parallel build)", runTrain)
	register("add", "add the vectors of a file to an existing index", runAdd)
}

// buildBatchRows is how many rows build and add read and add at a time:
// memory stays at about 100k x d floats whatever the size of the file, so
// files larger than RAM can be indexed. A variable so that tests can
// cross batch boundaries on small files.
var buildBatchRows = 100_000

// trainFlags are the flags of the training step, shared by build and
// train.
type trainFlags struct {
	data, dir, factory, metric *string
	trainSize                  *int
	seed                       *int64
	balance                    *float64
	quiet                      *bool
}

func addTrainFlags(fs *flag.FlagSet, dataHelp string) *trainFlags {
	return &trainFlags{
		data:      fs.String("data", "", dataHelp),
		dir:       fs.String("index", "", "index directory to create (must not exist or be empty)"),
		factory:   fs.String("factory", "", "index description, as FAISS's index_factory: IVF<nlist>,PQ<m> (8-bit codes: m bytes per vector; m divides the dimension) or IVF<nlist>,Flat"),
		metric:    fs.String("metric", "l2", "l2, ip or cosine"),
		trainSize: fs.Int("train-size", 0, "rows sampled for training (default: min(n, max(256 x nlist, 65536)), what k-means and PQ training use anyway)"),
		seed:      fs.Int64("seed", 1, "seed of the training sample and of k-means"),
		balance:   fs.Float64("balance", 0, "balanced coarse k-means: Sinkhorn eps EPS (e.g. 0.03) for lists of more even sizes; 0: plain k-means"),
		quiet:     fs.Bool("quiet", false, "no progress bars"),
	}
}

// trained is the outcome of the training step: an in-memory trained index
// and the open data file.
type trained struct {
	ix     *ivf.Index
	r      *vecio.Reader
	rows   int // vectors trained on
	start  time.Time
	trainS float64
}

// train checks the flags, refuses an index directory that is in use
// before the (possibly long) training, then trains an index on a seeded
// sample of the data file. The caller closes t.r.
func (tf *trainFlags) train(env *Env) (*trained, error) {
	if *tf.data == "" || *tf.dir == "" || *tf.factory == "" {
		return nil, fmt.Errorf("%w: --data, --index and --factory are required", errUsage)
	}
	if *tf.trainSize < 0 {
		return nil, fmt.Errorf("%w: --train-size must not be negative", errUsage)
	}
	if b := *tf.balance; !(b >= 0 && b < 1e6) {
		return nil, fmt.Errorf("%w: --balance %v: want an eps >= 0 (0: off)", errUsage, b)
	}
	m, err := ivf.ParseMetric(*tf.metric)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := checkNewIndexDir(*tf.dir); err != nil {
		return nil, err
	}
	r, err := vecio.OpenFloat32(*tf.data)
	if err != nil {
		return nil, err
	}
	t := &trained{r: r, start: time.Now()}
	defer func() {
		if t.ix == nil {
			r.Close()
		}
	}()
	n, d := r.Len(), r.Dim()
	if n == 0 || d == 0 {
		return nil, fmt.Errorf("%s holds no vectors", *tf.data)
	}
	ix, err := ivf.NewFromFactory(*tf.factory, d, m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	nlist := ix.Params().NList
	ts := *tf.trainSize
	if ts == 0 {
		ts = max(256*nlist, 65536)
	}
	ts = min(ts, n)
	if ts < nlist {
		return nil, fmt.Errorf("%d training vectors for %d lists: need at least one per list (%s has %d rows)", ts, nlist, *tf.data, n)
	}
	ix.Progress = buildProgress(env, *tf.quiet)
	sample, err := buildSample(r, ts, *tf.seed)
	if err != nil {
		return nil, err
	}
	if err := ix.Train(sample, ts, &ivf.TrainOptions{Seed: *tf.seed, Balance: *tf.balance}); err != nil {
		return nil, fmt.Errorf("train on %s: %w", *tf.data, err)
	}
	t.ix, t.rows, t.trainS = ix, ts, time.Since(t.start).Seconds()
	return t, nil
}

// checkNewIndexDir refuses, before any work, a directory that already
// holds an index or other files.
func checkNewIndexDir(dir string) error {
	err := ivf.CheckNewDir(dir)
	if errors.Is(err, ivf.ErrIndexExists) {
		return fmt.Errorf("%s already holds an index (use shelf add or shelf merge to add to it, or remove it first)", dir)
	}
	return err
}

func runTrain(env *Env) error {
	fs := newFlags(env, "train", "train --data SAMPLE --index DIR --factory IVF1024,PQ16 [--metric l2|ip|cosine] [--train-size N] [--seed S] [--balance EPS] [--quiet]",
		"shelf train --data sample.fvecs --index /data/idx --factory IVF4096,PQ16\n"+
			"shelf encode --index /data/idx --data base.fvecs --out /data/blocks --shard 0/4   # on 4 machines\n"+
			"shelf merge --index /data/idx --blocks /data/blocks")
	tf := addTrainFlags(fs, "training vectors (.fvecs, .bvecs or .npy): a sample of the data; none of them is added")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	t, err := tf.train(env)
	if err != nil {
		return err
	}
	defer t.r.Close()
	if err := t.ix.ToDisk(*tf.dir); err != nil {
		return err
	}
	if err := t.ix.Close(); err != nil {
		return err
	}
	p := t.ix.Params()
	fmt.Fprintf(env.Stdout, "trained %s: %s, %s, d=%d, on %d vectors of %s in %.2f s; it holds no vectors (shelf add, or shelf encode + shelf merge)\n",
		*tf.dir, p.Factory(), p.Metric, p.D, t.rows, *tf.data, t.trainS)
	return nil
}

func runBuild(env *Env) error {
	fs := newFlags(env, "build", "build --data FILE --index DIR --factory IVF1024,PQ16 [--metric l2|ip|cosine] [--train-size N] [--seed S] [--balance EPS] [--headroom 0.1] [--quiet]",
		"shelf build --data sift_base.fvecs --index /tmp/sift --factory IVF1024,PQ16\nshelf build --data emb.npy --index /tmp/emb --factory IVF4096,PQ32 --metric cosine --train-size 500000")
	tf := addTrainFlags(fs, "vectors to index (.fvecs, .bvecs or .npy)")
	headroom := fs.Float64("headroom", 0, "room left in every list's slot by the final compaction, as a share of its size, for adds to come (0: exact slots)")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if err := checkHeadroom(*headroom); err != nil {
		return err
	}
	t, err := tf.train(env)
	if err != nil {
		return err
	}
	defer t.r.Close()
	ix, r, data, dir, quiet := t.ix, t.r, tf.data, tf.dir, tf.quiet
	// Unsealed until every vector is in: a build that stops halfway (an
	// error, a kill) leaves a directory that is not an index, and a
	// re-run of the same command replaces it.
	if err := ix.ToDiskUnsealed(*dir); err != nil {
		return err
	}
	t0 := time.Now()
	added, err := buildAddAll(env, *quiet, ix, r, *data, nil)
	if err == nil {
		// Adds leave power-of-two slack in every list; a fresh index is
		// rewritten with exact slots in list order (a compaction), so it
		// takes its payload's size and nearby lists are read sequentially.
		_, err = ix.Compact(*headroom)
	}
	if err == nil {
		err = ix.Seal()
	}
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Adds commit batch by batch: what was committed stays valid.
		return fmt.Errorf("%w (%s is not an index yet: run the build again to replace it)", err, *dir)
	}
	addS := time.Since(t0).Seconds()
	total := time.Since(t.start).Seconds()
	size, _ := buildDirSize(*dir)
	out := env.Stdout
	p := ix.Params()
	fmt.Fprintf(out, "built %s: %s, %s, d=%d, from %s\n", *dir, p.Factory(), p.Metric, p.D, *data)
	fmt.Fprintf(out, "  vectors   %d (trained on %d)\n", added, t.rows)
	fmt.Fprintf(out, "  train     %.2f s\n", t.trainS)
	fmt.Fprintf(out, "  add       %.2f s (%.0f vectors/s)\n", addS, float64(added)/max(addS, 1e-9))
	fmt.Fprintf(out, "  total     %.2f s\n", total)
	fmt.Fprintf(out, "  on disk   %s (%d bytes)\n", buildHuman(size), size)
	return nil
}

func runAdd(env *Env) error {
	fs := newFlags(env, "add", "add --index DIR --data FILE [--ids FILE] [--quiet]",
		"shelf add --index /tmp/sift --data more.fvecs\nshelf add --index /tmp/sift --data more.npy --ids more_ids.npy")
	dir := fs.String("index", "", "index directory (made by shelf build)")
	data := fs.String("data", "", "vectors to add (.fvecs, .bvecs or .npy)")
	idsFile := fs.String("ids", "", "ids of the vectors, one per row (.npy int64/int32 or .ivecs); default: sequential after the last sequential id")
	quiet := fs.Bool("quiet", false, "no progress bars")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *data == "" || *dir == "" {
		return fmt.Errorf("%w: --index and --data are required", errUsage)
	}
	r, err := vecio.OpenFloat32(*data)
	if err != nil {
		return err
	}
	defer r.Close()
	var ids []int64
	if *idsFile != "" {
		n, d, v, err := vecio.ReadInt64(*idsFile)
		if err != nil {
			return err
		}
		if d != 1 && n > 0 {
			return fmt.Errorf("%s has %d columns, want one id per row", *idsFile, d)
		}
		if n != r.Len() {
			return fmt.Errorf("%s holds %d ids but %s holds %d vectors", *idsFile, n, *data, r.Len())
		}
		ids = v
	}
	ix, err := ivf.Open(*dir, nil)
	if err != nil {
		return err
	}
	if r.Len() > 0 && r.Dim() != ix.Params().D {
		ix.Close()
		return fmt.Errorf("%s has dimension %d but the index in %s has dimension %d", *data, r.Dim(), *dir, ix.Params().D)
	}
	t0 := time.Now()
	added, err := buildAddAll(env, *quiet, ix, r, *data, ids)
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s := time.Since(t0).Seconds()
	size, _ := buildDirSize(*dir)
	fmt.Fprintf(env.Stdout, "added %d vectors to %s in %.2f s (%.0f vectors/s); on disk %s\n",
		added, *dir, s, float64(added)/max(s, 1e-9), buildHuman(size))
	return nil
}

// buildSample reads ts rows chosen uniformly at random (seeded) without
// reading the whole file: Floyd's algorithm picks the rows in O(ts)
// memory, and reading them in file order keeps the reads mostly forward.
func buildSample(r *vecio.Reader, ts int, seed int64) ([]float32, error) {
	n, d := r.Len(), r.Dim()
	out := make([]float32, ts*d)
	if ts == n {
		return out, r.ReadRows(0, n, out)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0xb01d))
	chosen := make(map[int]struct{}, ts)
	rows := make([]int, 0, ts)
	for j := n - ts; j < n; j++ {
		t := rng.IntN(j + 1)
		if _, dup := chosen[t]; dup {
			t = j
		}
		chosen[t] = struct{}{}
		rows = append(rows, t)
	}
	slices.Sort(rows)
	// Read runs of consecutive rows with one call each.
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && rows[j] == rows[j-1]+1 {
			j++
		}
		if err := r.ReadRows(rows[i], j-i, out[i*d:j*d]); err != nil {
			return nil, err
		}
		i = j
	}
	return out, nil
}

// buildAddAll streams the rows of r into ix, buildBatchRows at a time,
// with the given ids or sequential ones, and returns how many it added.
func buildAddAll(env *Env, quiet bool, ix *ivf.Index, r *vecio.Reader, name string, ids []int64) (int64, error) {
	n, d := r.Len(), r.Dim()
	b := bar(env, quiet, "add", "vectors", int64(n))
	defer b.Finish()
	buf := make([]float32, min(n, buildBatchRows)*d)
	done := 0
	for done < n {
		k, err := r.Read(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return int64(done), err
		}
		x := buf[:k*d]
		if ids == nil {
			_, err = ix.Add(x, k)
		} else {
			err = ix.AddWithIDs(x, k, ids[done:done+k])
		}
		if err != nil {
			return int64(done), fmt.Errorf("add rows %d..%d of %s: %w", done, done+k, name, err)
		}
		done += k
		b.Set(int64(done), 0)
	}
	return int64(done), nil
}

// buildProgress draws one bar per training stage; the add stage is left
// out because buildAddAll draws one bar for the whole file, not one per
// batch.
func buildProgress(env *Env, quiet bool) func(stage string, done, total int64) {
	bars := map[string]*progress.Bar{}
	return func(stage string, done, total int64) {
		if stage == "add" {
			return
		}
		b, ok := bars[stage]
		if !ok {
			b = bar(env, quiet, stage, "", total)
			bars[stage] = b
		}
		b.Set(done, 0)
		if done >= total {
			b.Finish()
		}
	}
}

// buildDirSize is the bytes of the regular files under dir.
func buildDirSize(dir string) (int64, error) {
	var size int64
	err := filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			info, err := e.Info()
			if err != nil {
				return err
			}
			size += info.Size()
		}
		return nil
	})
	return size, err
}

func buildHuman(b int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(b)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", b)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + " " + units[i]
}
