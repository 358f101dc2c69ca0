package ivf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// MergeOptions tune Merge, MergeBlocks and MergeFrom.
type MergeOptions struct {
	// IDShift is added to the id of every merged vector (FAISS
	// merge_from's add_id).
	IDShift int64
	// AutoShift numbers the vectors of each source after the ids the
	// index holds when that source's turn comes (the shift is NextID
	// then), as sequential adds in that order would; IDShift is ignored.
	AutoShift bool
	// AllowDuplicateIDs merges even when two vectors would then share an
	// id; without it such a merge is refused with ErrDuplicateIDs, before
	// anything is written.
	AllowDuplicateIDs bool
	// Headroom leaves that share of each merged list's size free in its
	// slot (0.1: 10%), so adds after the merge append in place; 0 gives
	// exact slots (the first add to a list then moves it). On disk only.
	Headroom float64
}

// MergeReport tells what a merge did.
type MergeReport struct {
	Vectors int64 // vectors merged
	Blocks  int   // code block files merged
	Indexes int   // other indexes merged
	// Notes are things the caller should know, e.g. block numbers
	// missing from the block directory.
	Notes []string
}

// Merge batches of code blocks: every block of a batch is one Source
// with its file open and its per-list offsets in memory (4 bytes a list),
// and the batch is one commit. Bounding both keeps file descriptors and
// memory small whatever the number of blocks; below the bounds (1000
// blocks, 100 million vectors at the default block size, for up to 65536
// lists) a whole block merge is a single atomic commit.
var (
	mergeMaxBlocks            = 1000 // a variable for tests
	mergeMaxOffsetBytes int64 = 256 << 20
)

// MergeFrom appends all of other's vectors (same training) to the index
// in one commit, ids shifted as opts say (FAISS IndexIVF::merge_from);
// opts may be nil. other is left unchanged.
func (ix *Index) MergeFrom(other *Index, opts *MergeOptions) error {
	_, err := ix.Merge(context.Background(), "", []*Index{other}, opts)
	return err
}

// MergeBlocks merges the code blocks in blockDir (written by EncodeBlock
// with this index's training): the reduce step of the parallel build.
func (ix *Index) MergeBlocks(ctx context.Context, blockDir string, opts *MergeOptions) (MergeReport, error) {
	return ix.Merge(ctx, blockDir, nil, opts)
}

// Merge merges the code blocks of blockDir (if not "") and then the other
// indexes, all of this index's training. Everything is checked before
// the first commit: blocks (complete, of this training, of one encode
// run) and ids (no id given to two vectors, unless
// opts.AllowDuplicateIDs). Blocks go in batches of up to 1000, each one
// commit through the store's two-pass merge; each other index is one
// commit. Every commit carries the id bookkeeping of the vectors it
// adds, so an interruption (ctx, a crash) leaves the index with whole
// commits only and a next id past all of them.
func (ix *Index) Merge(ctx context.Context, blockDir string, others []*Index, opts *MergeOptions) (MergeReport, error) {
	var o MergeOptions
	if opts != nil {
		o = *opts
	}
	var rep MergeReport
	if !ix.trained {
		return rep, ErrNotTrained
	}
	for _, other := range others {
		if err := ix.SameTraining(other); err != nil {
			if other.dir != "" {
				return rep, fmt.Errorf("%s: %w", other.dir, err)
			}
			return rep, err
		}
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()

	var blocks []*blockRef
	if blockDir != "" {
		var err error
		if blocks, rep.Notes, err = ix.checkBlocks(blockDir); err != nil {
			return rep, err
		}
	}
	snaps := make([]Snapshot, len(others))
	defer func() {
		for _, s := range snaps {
			if s != nil {
				s.Release()
			}
		}
	}()
	for i, other := range others {
		s, err := other.lists.Snapshot()
		if err != nil {
			return rep, err
		}
		snaps[i] = s
	}

	// The ids of every party, shifted, and the duplicate check.
	own, err := ix.lists.Snapshot()
	if err != nil {
		return rep, err
	}
	ids, err := ix.idBounds(own)
	if err != nil {
		own.Release()
		return rep, err
	}
	name := "the index"
	if ix.dir != "" {
		name = "index " + ix.dir
	}
	parties := []*idParty{{name: name, lo: ids.lo, hi: ids.hi, src: own}}
	next := ids.next
	shift := func() int64 {
		if o.AutoShift {
			return next
		}
		return o.IDShift
	}
	var blockShift int64
	var total int64
	if len(blocks) > 0 {
		blockShift = shift()
		p := &idParty{name: "block directory " + blockDir, shift: blockShift}
		for _, b := range blocks {
			if b.h.Count == 0 {
				continue
			}
			lo, hi, err := shiftRange(b.h.First, b.h.First+b.h.Count-1, blockShift)
			if err != nil {
				own.Release()
				return rep, fmt.Errorf("%s: %w", b.path, err)
			}
			if n := len(p.ranges); n > 0 && p.ranges[n-1][1]+1 == lo {
				p.ranges[n-1][1] = hi
			} else {
				p.ranges = append(p.ranges, [2]int64{lo, hi})
			}
			total += b.h.Count
		}
		p.lo, p.hi = boundsOf(p.ranges)
		parties = append(parties, p)
		next = idState{next: next}.with(p.lo, p.hi).next
	}
	otherShift := make([]int64, len(others))
	otherIDs := make([]idState, len(others)) // scanned once when not recorded
	for i, other := range others {
		oids, err := other.idBounds(snaps[i])
		if err != nil {
			own.Release()
			return rep, err
		}
		otherShift[i], otherIDs[i] = shift(), oids
		p := &idParty{name: "index " + other.dir, src: snaps[i], shift: otherShift[i], lo: oids.lo, hi: oids.hi}
		if other.dir == "" {
			p.name = fmt.Sprintf("merged index %d", i+1)
		}
		if p.lo <= p.hi {
			if p.lo, p.hi, err = shiftRange(p.lo, p.hi, p.shift); err != nil {
				own.Release()
				return rep, fmt.Errorf("%s: %w", p.name, err)
			}
		}
		parties = append(parties, p)
		next = max(idState{next: next}.with(p.lo, p.hi).next, min(oids.next, maxIDAfter(p.shift))+p.shift)
		total += other.NTotal()
	}
	if !o.AllowDuplicateIDs {
		err = checkDuplicates(parties, ids.next)
	}
	own.Release()
	if err != nil {
		return rep, err
	}
	ix.mu.Lock()
	ix.ids = ids // bounds now known, stored with the first commit
	ix.mu.Unlock()

	// Progress over all commits: each store merge reports its own.
	var done int64
	ix.mu.Lock()
	ix.opProgress = func(stage string, d, _ int64) {
		if stage == "merge" {
			ix.progress("merge", done+d, total)
		}
	}
	ix.mu.Unlock()
	defer func() {
		ix.mu.Lock()
		ix.opProgress = nil
		ix.mu.Unlock()
	}()
	interrupted := func(what string) error {
		if ctx.Err() == nil {
			return nil
		}
		return fmt.Errorf("interrupted: %s; the index holds whole merges only: %w", what, ctx.Err())
	}

	nlist := ix.p.NList
	perBatch := max(1, min(mergeMaxBlocks, int(mergeMaxOffsetBytes/int64(4*(nlist+1)))))
	for lo := 0; lo < len(blocks); lo += perBatch {
		hi := min(lo+perBatch, len(blocks))
		n, err := ix.mergeBlockBatch(blocks[lo:hi], blockShift, o.Headroom)
		if err != nil {
			if lo > 0 {
				return rep, fmt.Errorf("%w (blocks in %s before %s were merged)", err, blockDir, filepath.Base(blocks[lo].path))
			}
			return rep, err
		}
		done += n
		rep.Vectors += n
		rep.Blocks += hi - lo
		if hi < len(blocks) || len(others) > 0 {
			if err := interrupted(fmt.Sprintf("blocks up to %s merged, the rest not", filepath.Base(blocks[hi-1].path))); err != nil {
				return rep, err
			}
		}
	}
	for i, other := range others {
		oids := otherIDs[i]
		ix.mu.Lock()
		after := ix.ids
		ix.mu.Unlock()
		if oids.lo <= oids.hi {
			after = after.with(oids.lo+otherShift[i], oids.hi+otherShift[i])
		}
		after.next = max(after.next, min(oids.next, maxIDAfter(otherShift[i]))+otherShift[i])
		n, err := ix.lists.MergeFrom([]Source{snaps[i]}, []int64{otherShift[i]}, o.Headroom, after.meta())
		if err != nil {
			return rep, fmt.Errorf("merge %s: %w", other.dir, err)
		}
		ix.mu.Lock()
		ix.ids = after
		ix.direct = nil
		ix.mu.Unlock()
		done += n
		rep.Vectors += n
		rep.Indexes++
		if i+1 < len(others) {
			if err := interrupted(fmt.Sprintf("merged up to %s, the rest not", other.dir)); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// maxIDAfter is the largest id that shift can be added to.
func maxIDAfter(shift int64) int64 {
	if shift > 0 {
		return math.MaxInt64 - shift
	}
	return math.MaxInt64
}

// shiftRange adds shift to [lo, hi], refusing ids that would overflow or
// become -1 (an empty result slot).
func shiftRange(lo, hi, shift int64) (int64, int64, error) {
	if hi > maxIDAfter(shift) || (shift < 0 && lo < math.MinInt64-shift) || (lo+shift <= -1 && hi+shift >= -1) {
		return 0, 0, fmt.Errorf("%w: ids %d..%d shifted by %d overflow or take id -1 (an empty result slot)", ErrInput, lo, hi, shift)
	}
	return lo + shift, hi + shift, nil
}

func boundsOf(ranges [][2]int64) (lo, hi int64) {
	if len(ranges) == 0 {
		return math.MaxInt64, math.MinInt64
	}
	return ranges[0][0], ranges[len(ranges)-1][1]
}

// blockRef is a checked block file: its header, and its per-list offsets
// unless there are too many blocks to keep them all.
type blockRef struct {
	path    string
	h       blockInfo
	offsets []int32
}

// checkBlocks reads and checks every block file of dir, so that a bad
// block or another training refuses the merge instead of stopping it
// halfway.
func (ix *Index) checkBlocks(dir string) ([]*blockRef, []string, error) {
	model, err := ix.modelID()
	if err != nil {
		return nil, nil, err
	}
	merged, err := ix.mergedBlocks()
	if err != nil {
		return nil, nil, err
	}
	skipped, firstSize := 0, int64(0)
	nums, err := listBlockFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	if len(nums) == 0 {
		return nil, nil, fmt.Errorf("no block files (block-NNNNNNNN.codes) in %s", dir)
	}
	where := "this index"
	if ix.dir != "" {
		where = ix.dir
	}
	keep := int64(len(nums))*int64(ix.p.NList+1)*4 <= mergeMaxOffsetBytes
	var refs []*blockRef
	var notes []string
	for k, b := range nums {
		path := BlockPath(dir, b)
		h, off, err := readBlockInfo(path)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case h.Model != model:
			return nil, nil, fmt.Errorf("%s was encoded with another training (model %08x, %s has %08x): refusing to merge it", path, h.Model, where, model)
		case h.NList != ix.p.NList || h.CodeSize != ix.TwoLayerCodeSize():
			return nil, nil, fmt.Errorf("%s holds %d lists of %d-byte codes, %s has %d of %d", path, h.NList, h.CodeSize, where, ix.p.NList, ix.TwoLayerCodeSize())
		case h.Block != b || h.First != h.Block*h.BlockSize:
			return nil, nil, fmt.Errorf("%s: %w: header says block %d from row %d", path, ErrBadBlock, h.Block, h.First)
		case k > 0 && h.BlockSize != firstSize:
			return nil, nil, fmt.Errorf("%s has blocks of %d vectors, %s of %d: from different encode runs", path, h.BlockSize, BlockPath(dir, nums[0]), firstSize)
		}
		if k == 0 {
			firstSize = h.BlockSize
		}
		if k > 0 && b != nums[k-1]+1 {
			notes = append(notes, fmt.Sprintf("blocks %d to %d are missing from %s (rows %d to %d not merged)",
				nums[k-1]+1, b-1, dir, (nums[k-1]+1)*h.BlockSize, b*h.BlockSize))
		}
		if crc, ok := merged[h.Block]; ok && crc == h.CRC {
			skipped++
			continue
		}
		if !keep {
			off = nil
		}
		refs = append(refs, &blockRef{path: path, h: h, offsets: off})
	}
	if skipped > 0 {
		notes = append(notes, fmt.Sprintf("%d of the %d blocks in %s were merged before (the same files): skipped", skipped, len(nums), dir))
	}
	return refs, notes, nil
}

// The blocks an index took in are recorded with the commit that merges
// them, as (block number, file CRC-32C) pairs, so merging a block
// directory again, or re-running a merge that was interrupted between
// batches, skips what is in instead of adding the vectors twice.
const metaMergedBlocks = "ivf/merged_blocks"

func (ix *Index) mergedBlocks() (map[int64]uint32, error) {
	m := map[int64]uint32{}
	v, ok := ix.lists.Meta(metaMergedBlocks)
	if !ok {
		return m, nil
	}
	if len(v)%12 != 0 {
		return nil, fmt.Errorf("%w: record %s has %d bytes, not a whole number of 12-byte entries", ErrCorrupt, metaMergedBlocks, len(v))
	}
	for i := 0; i < len(v); i += 12 {
		m[int64(binary.LittleEndian.Uint64(v[i:]))] = binary.LittleEndian.Uint32(v[i+8:])
	}
	return m, nil
}

func encodeMergedBlocks(m map[int64]uint32) []byte {
	nums := make([]int64, 0, len(m))
	for b := range m {
		nums = append(nums, b)
	}
	slices.Sort(nums)
	out := make([]byte, 0, 12*len(nums))
	for _, b := range nums {
		out = binary.LittleEndian.AppendUint64(out, uint64(b))
		out = binary.LittleEndian.AppendUint32(out, m[b])
	}
	return out
}

// mergeBlockBatch merges blocks in one commit, each block a Source, with
// the id bookkeeping after them.
func (ix *Index) mergeBlockBatch(blocks []*blockRef, shift int64, headroom float64) (int64, error) {
	srcs := make([]Source, 0, len(blocks))
	shifts := make([]int64, 0, len(blocks))
	defer func() {
		for _, s := range srcs {
			s.(*blockSource).f.Close()
		}
	}()
	ix.mu.Lock()
	after := ix.ids
	ix.mu.Unlock()
	merged, err := ix.mergedBlocks()
	if err != nil {
		return 0, err
	}
	for _, b := range blocks {
		merged[b.h.Block] = b.h.CRC
		off := b.offsets
		if off == nil {
			h, o, err := readBlockInfo(b.path)
			if err != nil {
				return 0, err
			}
			if h != b.h {
				return 0, fmt.Errorf("%s: %w: changed during the merge", b.path, ErrBadBlock)
			}
			off = o
		}
		f, err := os.Open(b.path)
		if err != nil {
			return 0, err
		}
		srcs = append(srcs, &blockSource{f: f, path: b.path, h: b.h, offsets: off})
		shifts = append(shifts, shift)
		if b.h.Count > 0 {
			after = after.with(b.h.First+shift, b.h.First+b.h.Count-1+shift)
		}
	}
	meta := after.meta()
	meta[metaMergedBlocks] = encodeMergedBlocks(merged)
	n, err := ix.lists.MergeFrom(srcs, shifts, headroom, meta)
	if err != nil {
		if errors.Is(err, ErrBadBlock) {
			return 0, fmt.Errorf("%w; nothing of this batch was merged", err)
		}
		return 0, err
	}
	ix.mu.Lock()
	ix.ids = after
	ix.direct = nil
	ix.mu.Unlock()
	return n, nil
}
