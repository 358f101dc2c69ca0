package tools

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("encode", "encode a data file into code blocks with a trained index (parallel build)", runEncode)
}

// parseEncodeShard parses "i/n" with 0 <= i < n.
func parseEncodeShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	if ok {
		i, err = strconv.Atoi(a)
		if err == nil {
			n, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("%w: --shard %q: want i/n with 0 <= i < n", errUsage, s)
	}
	return i, n, nil
}

// runEncode is the map step of a parallel build (FAISS's RETRO-style
// "encode, then merge"): machines share out the blocks of one data file,
// each writes self-checking block files, and a later `shelf merge` puts
// them into the index in one two-pass merge. Blocks are the unit of
// resumption: a finished block survives a crash and is not redone.
func runEncode(env *Env) error {
	fs := newFlags(env, "encode", "encode --index DIR --data FILE --out BLOCKDIR [--block-size N] [--shard i/n | --shard auto [--shards N]] [--workers W] [--quiet]",
		"shelf encode --index /data/idx --data base.fvecs --out /data/blocks --shard 0/4\n"+
			"shelf encode --index /data/idx --data base.fvecs --out /data/blocks --shard auto              # in a Slurm job array (sbatch --array=0-3)\n"+
			"shelf encode --index /data/idx --data base.fvecs --out /data/blocks --shard auto --shards 4   # in a Kubernetes indexed Job of 4 completions\n"+
			"shelf merge --index /data/idx --blocks /data/blocks")
	index := fs.String("index", "", "trained index directory (opened read-only)")
	data := fs.String("data", "", "vectors to encode (.fvecs, .bvecs or .npy); ids are row numbers")
	out := fs.String("out", "", "directory of the block files (created if missing)")
	bs := fs.Int("block-size", 100_000, "vectors per block file")
	shard := fs.String("shard", "0/1", "do only blocks b with b % n == i (0-based i/n), to split the work across machines; auto: from a Slurm job array (i = "+
		envSlurmID+" - "+envSlurmMin+", n = "+envSlurmCount+") or a Kubernetes indexed Job (i = "+envK8sIndex+", n = --shards)")
	shards := fs.Int("shards", 0, "with --shard auto: the number of shards n (required for a Kubernetes indexed Job: its completions; checked against Slurm's "+envSlurmCount+")")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "blocks encoded at once")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *index == "" || *data == "" || *out == "" {
		return fmt.Errorf("%w: --index, --data and --out are required", errUsage)
	}
	if *bs < 1 || *workers < 1 {
		return fmt.Errorf("%w: --block-size and --workers must be positive", errUsage)
	}
	sh, err := resolveShard(*shard, *shards, os.LookupEnv)
	if err != nil {
		return err
	}
	si, sn := sh.rank, sh.count

	ix, err := ivf.OpenReadOnly(*index)
	if err != nil {
		return err
	}
	defer ix.Close()
	p := ix.Params()
	r, err := vecio.OpenFloat32(*data)
	if err != nil {
		return err
	}
	n, dim := r.Len(), r.Dim()
	r.Close()
	if n > 0 && dim != p.D {
		return fmt.Errorf("%s has %d-dimensional vectors, index %s has dimension %d", *data, dim, *index, p.D)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	// Without overflow for any --block-size and --shard n.
	nblocks := n / *bs
	if n%*bs != 0 {
		nblocks++
	}
	var mine []int
	var total int64
	for b := si; b < nblocks; b += min(sn, nblocks) {
		mine = append(mine, b)
		total += int64(min((b+1)**bs, n) - b**bs)
	}
	w := min(*workers, max(1, len(mine)))
	if w > 1 {
		// Parallelism comes from the blocks; one thread each avoids
		// oversubscribing the cores.
		ix.Threads = 1
	}

	pb := bar(env, *quiet, "encode", "vectors", total)
	t0 := time.Now()
	jobs := make(chan int)
	var (
		mu               sync.Mutex
		firstErr         error
		written, skipped int
		encoded          int64
		stop             = make(chan struct{})
		once             sync.Once
		wg               sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		once.Do(func() { close(stop) })
	}
	for k := 0; k < w; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A reader each: readers reuse a buffer, so they are not shared.
			rd, err := vecio.OpenFloat32(*data)
			if err != nil {
				fail(err)
				return
			}
			defer rd.Close()
			for b := range jobs {
				first := b * *bs
				cnt := min(first+*bs, n) - first
				blk := ivf.Block{Size: int64(*bs), Number: int64(b), First: int64(first), Count: int64(cnt)}
				path := ivf.BlockPath(*out, blk.Number)
				if err := ix.CheckBlock(*out, blk); err == nil {
					pb.Add(int64(cnt))
					mu.Lock()
					skipped++
					mu.Unlock()
					continue
				} else if errors.Is(err, ivf.ErrOtherBlock) {
					fmt.Fprintf(env.Stderr, "shelf encode: %s is from another run (model, block size or rows differ), encoding it again\n", path)
				} else if !errors.Is(err, os.ErrNotExist) {
					fmt.Fprintf(env.Stderr, "shelf encode: %v; encoding it again\n", err)
				}
				x := make([]float32, cnt*p.D)
				if err := rd.ReadRows(first, cnt, x); err != nil {
					fail(err)
					return
				}
				if err := ix.EncodeBlock(*out, blk, x); err != nil {
					fail(fmt.Errorf("block %d (rows %d to %d) into %s: %w", b, first, first+cnt, path, err))
					return
				}
				pb.Add(int64(cnt))
				mu.Lock()
				written++
				encoded += int64(cnt)
				mu.Unlock()
			}
		}()
	}
feed:
	for _, b := range mine {
		select {
		case jobs <- b:
		case <-stop:
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	pb.Finish()
	if firstErr != nil {
		return firstErr
	}
	el := time.Since(t0).Seconds()
	from := ""
	if *shard == "auto" {
		from = " from " + sh.from
	}
	fmt.Fprintf(env.Stdout, "shelf encode: %d blocks written, %d skipped (shard %d/%d%s, of %d blocks), %d vectors encoded in %.2f s, %.0f vectors/s\n",
		written, skipped, si, sn, from, nblocks, encoded, el, float64(encoded)/max(el, 1e-9))
	return nil
}
