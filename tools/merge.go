package tools

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shelfdb/shelf/internal/progress"
	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("merge", "merge code blocks and other indexes into an on-disk index", runMerge)
}

// repeatedFlag is a flag that may repeat; each use appends a value.
type repeatedFlag []string

func (m *repeatedFlag) String() string { return strings.Join(*m, ",") }

func (m *repeatedFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

// runMerge is the reduce step of a parallel build. Blocks go through the
// index's merge (ivf.Index.Merge: the store's two-pass merge, list sizes
// first, then one exact slot per grown list written sequentially) instead
// of per-vector adds, so the lists end up contiguous and the index is only
// touched by whole commits: an interrupted merge leaves the index as
// before or with whole batches in.
func runMerge(env *Env) error {
	fs := newFlags(env, "merge", "merge --index DIR [--blocks BLOCKDIR] [--from OTHER_INDEX ...] [--id-shift N|auto] [--allow-duplicate-ids] [--headroom 0.1] [--quiet]",
		"shelf merge --index /data/idx --blocks /data/blocks\n"+
			"shelf merge --index /data/idx --from /data/idx-part1 --from /data/idx-part2 --id-shift auto")
	index := fs.String("index", "", "on-disk index directory to merge into (opened read-write)")
	blocks := fs.String("blocks", "", "directory of block files written by shelf encode with this index's training")
	var from repeatedFlag
	fs.Var(&from, "from", "index `directory` of the same training to merge in (repeat for several)")
	shift := fs.String("id-shift", "0", "added to the ids of the merged vectors (block ids are row numbers); auto: number each source after the ids the index holds when its turn comes, as sequential adds would")
	dups := fs.Bool("allow-duplicate-ids", false, "merge even if two vectors would then share an id (refused otherwise)")
	headroom := fs.Float64("headroom", 0, "room left in each merged list's slot, as a share of its size, so later adds append in place (0: exact slots; the first add to a list then moves it)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *index == "" {
		return fmt.Errorf("%w: --index is required", errUsage)
	}
	if err := checkHeadroom(*headroom); err != nil {
		return err
	}
	if *blocks == "" && len(from) == 0 {
		return fmt.Errorf("%w: nothing to merge: give --blocks or --from", errUsage)
	}
	opts := &ivf.MergeOptions{AllowDuplicateIDs: *dups, Headroom: *headroom}
	if *shift == "auto" {
		opts.AutoShift = true
	} else if v, err := strconv.ParseInt(*shift, 10, 64); err == nil {
		opts.IDShift = v
	} else {
		return fmt.Errorf("%w: --id-shift %q: want an integer or auto", errUsage, *shift)
	}

	ix, err := ivf.Open(*index, nil)
	if err != nil {
		return err
	}
	defer ix.Close()
	others := make([]*ivf.Index, 0, len(from))
	defer func() {
		for _, o := range others {
			o.Close()
		}
	}()
	for _, dir := range from {
		o, err := ivf.OpenReadOnly(dir)
		if err != nil {
			return err
		}
		others = append(others, o)
	}

	// An interrupt lets the commit in progress finish, then stops.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var pb *progress.Bar
	ix.Progress = func(stage string, done, total int64) {
		if stage != "merge" {
			return
		}
		if pb == nil {
			pb = bar(env, *quiet, "merge", "vectors", total)
		}
		pb.Set(done, 0)
	}
	t0 := time.Now()
	rep, err := ix.Merge(ctx, *blocks, others, opts)
	if pb != nil {
		pb.Finish()
	}
	for _, note := range rep.Notes {
		fmt.Fprintf(env.Stderr, "shelf merge: note: %s\n", note)
	}
	if err != nil {
		return err
	}
	el := time.Since(t0).Seconds()
	bytes := rep.Vectors * int64(8+ix.Params().CodeSize())
	fmt.Fprintf(env.Stdout, "shelf merge: %d vectors merged (%d blocks, %d indexes) in %.2f s, %.1f MB/s; %s holds %d vectors, next id %d\n",
		rep.Vectors, rep.Blocks, rep.Indexes, el, float64(bytes)/1e6/max(el, 1e-9), *index, ix.NTotal(), ix.NextID())
	return nil
}
