package tools

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shelfdb/shelf/ivf"
	"github.com/shelfdb/shelf/store"
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

// Merge batches: every block of a batch is one store.Source with its
// file open and its per-list offsets in memory (4 bytes a list), and the
// batch is one commit. Bounding both keeps file descriptors and memory
// small whatever the number of blocks; below the bounds (1000 blocks,
// 100 million vectors at the default block size, for up to 65536 lists)
// the whole block merge is a single atomic commit.
const (
	mergeMaxBlocks      = 1000
	mergeMaxOffsetBytes = 256 << 20
)

// runMerge is the reduce step of a parallel build. Blocks go through the
// store's two-pass merge (list sizes first, then one exact slot per grown
// list written sequentially) instead of per-vector adds, so the lists end
// up contiguous and the index is only touched by whole commits: an
// interrupted merge leaves the index as before or with whole batches in.
func runMerge(env *Env) error {
	fs := newFlags(env, "merge", "merge --index DIR [--blocks BLOCKDIR] [--from OTHER_INDEX ...] [--headroom 0.1] [--quiet]",
		"shelf merge --index /data/idx --blocks /data/blocks\n"+
			"shelf merge --index /data/idx --from /data/idx-part1 --from /data/idx-part2")
	index := fs.String("index", "", "on-disk index directory to merge into (opened read-write)")
	blocks := fs.String("blocks", "", "directory of block files written by shelf encode with this index")
	var from repeatedFlag
	fs.Var(&from, "from", "index `directory` of the same training to merge in, ids kept (repeat for several)")
	headroom := fs.Float64("headroom", 0, "room left in each merged list's slot, as a share of its size, so later adds append in place (0: exact slots; the first add to a list then moves it)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *index == "" {
		return fmt.Errorf("%w: --index is required", errUsage)
	}
	if !(*headroom >= 0 && *headroom <= 4) {
		return fmt.Errorf("%w: --headroom %v: want a share in [0, 4]", errUsage, *headroom)
	}
	if *blocks == "" && len(from) == 0 {
		return fmt.Errorf("%w: nothing to merge: give --blocks or --from", errUsage)
	}

	ix, err := ivf.Open(*index)
	if err != nil {
		return err
	}
	defer ix.Close()
	dl, ok := ix.Lists().(*ivf.DiskLists)
	if !ok {
		return fmt.Errorf("%s is not an on-disk index", *index)
	}
	dl.MergeHeadroom = *headroom
	p := ix.Params()

	// Check everything before the first commit, so that a bad block or
	// another training refuses the merge instead of stopping it halfway.
	var (
		paths   []string
		heads   []blockInfo
		offsets [][]int32
		total   int64
	)
	if *blocks != "" {
		model, err := blockModelIdentity(*index)
		if err != nil {
			return err
		}
		nums, err := listBlockFiles(*blocks)
		if err != nil {
			return err
		}
		if len(nums) == 0 {
			return fmt.Errorf("no block files (block-NNNNNNNN.codes) in %s", *blocks)
		}
		keep := int64(len(nums))*int64(p.NList+1)*4 <= mergeMaxOffsetBytes
		for k, b := range nums {
			path := filepath.Join(*blocks, blockName(b))
			h, off, err := readBlockInfo(path)
			if err != nil {
				return err
			}
			switch {
			case h.Model != model:
				return fmt.Errorf("%s was encoded with another training (model %08x, %s has %08x): refusing to merge it", path, h.Model, *index, model)
			case h.NList != p.NList || h.CodeSize != ix.TwoLayerCodeSize():
				return fmt.Errorf("%s holds %d lists of %d-byte codes, %s has %d of %d", path, h.NList, h.CodeSize, *index, p.NList, ix.TwoLayerCodeSize())
			case h.Block != int64(b) || h.First != h.Block*h.BlockSize:
				return fmt.Errorf("%s: %w: header says block %d from row %d", path, errBadBlock, h.Block, h.First)
			case k > 0 && h.BlockSize != heads[0].BlockSize:
				return fmt.Errorf("%s has blocks of %d vectors, %s of %d: from different encode runs", path, h.BlockSize, paths[0], heads[0].BlockSize)
			}
			if k > 0 && b != nums[k-1]+1 {
				fmt.Fprintf(env.Stderr, "shelf merge: note: blocks %d to %d are missing from %s (rows %d to %d not merged)\n",
					nums[k-1]+1, b-1, *blocks, int64(nums[k-1]+1)*h.BlockSize, int64(b)*h.BlockSize)
			}
			if !keep {
				off = nil
			}
			paths = append(paths, path)
			heads = append(heads, h)
			offsets = append(offsets, off)
			total += h.Count
		}
	}
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
		if err := ix.SameTraining(o); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		total += o.NTotal()
	}

	// An interrupt lets the commit in progress finish, then stops.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	interrupted := func(done string) error {
		if ctx.Err() == nil {
			return nil
		}
		return fmt.Errorf("interrupted: %s; the index holds whole merges only", done)
	}

	pb := bar(env, *quiet, "merge", "vectors", total)
	t0 := time.Now()
	var merged, bytes int64
	perBatch := max(1, min(mergeMaxBlocks, mergeMaxOffsetBytes/(4*(p.NList+1))))
	for lo := 0; lo < len(paths); lo += perBatch {
		hi := min(lo+perBatch, len(paths))
		// Later adds continue after the largest id merged so far.
		next := ix.NextID()
		for _, h := range heads[lo:hi] {
			next = max(next, h.First+h.Count)
		}
		k, v := ivf.NextIDRecord(next)
		n, err := mergeBlockBatch(dl.S, paths[lo:hi], heads[lo:hi], offsets[lo:hi], pb.Add, map[string][]byte{k: v}, *headroom)
		if err != nil {
			if lo > 0 {
				return fmt.Errorf("%w (blocks in %s before %s were merged)", err, *blocks, filepath.Base(paths[lo]))
			}
			return err
		}
		merged += n
		bytes += n * int64(8+p.CodeSize())
		if err := interrupted(fmt.Sprintf("blocks up to %s merged, the rest not", filepath.Base(paths[hi-1]))); err != nil && hi < len(paths) {
			return err
		}
	}
	for k, o := range others {
		n := o.NTotal()
		if err := ix.MergeFrom(o, 0); err != nil {
			return fmt.Errorf("merge %s: %w", from[k], err)
		}
		pb.Add(n)
		merged += n
		bytes += n * int64(8+p.CodeSize())
		if err := interrupted(fmt.Sprintf("merged up to --from %s, the rest not", from[k])); err != nil && k+1 < len(others) {
			return err
		}
	}
	pb.Finish()
	el := time.Since(t0).Seconds()
	fmt.Fprintf(env.Stdout, "shelf merge: %d vectors merged (%d blocks, %d indexes) in %.2f s, %.1f MB/s; %s holds %d vectors\n",
		merged, len(paths), len(others), el, float64(bytes)/1e6/max(el, 1e-9), *index, ix.NTotal())
	return nil
}

// mergeBlockBatch merges blocks into st in one commit, each block a Source.
func mergeBlockBatch(st *store.Store, paths []string, heads []blockInfo, offsets [][]int32, onRead func(int64), meta map[string][]byte, headroom float64) (int64, error) {
	srcs := make([]store.Source, 0, len(paths))
	defer func() {
		for _, s := range srcs {
			s.(*blockSource).f.Close()
		}
	}()
	for k, path := range paths {
		off := offsets[k]
		if off == nil {
			h, o, err := readBlockInfo(path)
			if err != nil {
				return 0, err
			}
			if h != heads[k] {
				return 0, fmt.Errorf("%s: %w: changed during the merge", path, errBadBlock)
			}
			off = o
		}
		f, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		srcs = append(srcs, &blockSource{f: f, path: path, h: heads[k], offsets: off, onRead: onRead})
	}
	n, err := st.MergeFrom(srcs, &store.MergeOptions{Meta: meta, Headroom: headroom})
	if err != nil && errors.Is(err, errBadBlock) {
		return 0, fmt.Errorf("%w; nothing of this batch was merged", err)
	}
	return n, err
}
