package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/shelfdb/shelf/faissio"
	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/ivf"
)

// The operations behind the exported functions, on Go values: export.go
// converts C arguments, checks sizes with the functions here before it
// makes a slice, and calls these.

// Status codes of the exported functions.
const (
	statusOK          = 0
	statusError       = 1
	statusInterrupted = 2
)

// maxElems bounds the elements of one C array a call takes (vectors x
// dimension, ids): 2^40, far beyond any memory, so that no product of
// sizes from C can overflow and every slice over C memory is of a length
// Go can represent.
const maxElems = 1 << 40

// searchChunk is the queries one Search call takes before the token is
// checked again: ivf's block of queries (1,024), so every query is
// searched in the same block as by one call over all of them and the
// results are the same.
const searchChunk = 1024

// status maps an error to the status code of the exported functions.
func status(err error) int {
	switch {
	case err == nil:
		return statusOK
	case errors.Is(err, context.Canceled):
		return statusInterrupted
	}
	return statusError
}

// interrupted is the error of a call stopped through its token, saying
// what it left behind.
func interrupted(what string) error { return interruptedError(what) }

// interruptedError is context.Canceled with a message for people.
type interruptedError string

func (e interruptedError) Error() string { return "interrupted: " + string(e) }
func (interruptedError) Unwrap() error   { return context.Canceled }

// checkMatrix checks n rows of dimension d passed for an index of
// dimension want, before a slice is made over them: the error names both
// dimensions.
func checkMatrix(what string, n, d int64, want int) error {
	if d != int64(want) {
		return fmt.Errorf("%w: %s of dimension %d, the index has dimension %d", ivf.ErrDim, what, d, want)
	}
	if n < 0 || d <= 0 || n > maxElems/d {
		return fmt.Errorf("%w: %d %s of dimension %d", ivf.ErrInput, n, what, d)
	}
	return nil
}

// checkCount checks a count of C elements (ids) before a slice is made.
func checkCount(what string, n int64) error {
	if n < 0 || n > maxElems {
		return fmt.Errorf("%w: %d %s", ivf.ErrInput, n, what)
	}
	return nil
}

// checkResults checks a search's result shape (nq x k pairs) before the
// caller allocates the arrays for it.
func checkResults(nq, k int64) error {
	if nq < 0 || nq > maxElems || k < 1 || k > maxElems {
		return fmt.Errorf("%w: %d queries, k = %d", ivf.ErrInput, nq, k)
	}
	if _, ok := vecmath.ResultCount(int(nq), int(k)); !ok {
		return fmt.Errorf("%w: k = %d for %d queries asks for more than the %d results one search returns: search in smaller batches of queries", ivf.ErrInput, k, nq, ivf.MaxResults)
	}
	return nil
}

// create makes an untrained index in memory; train trains it and makes
// dir an index directory (dir "" keeps it in memory). dir is checked now,
// so that a directory in use is refused before a long training.
func create(dir, factory string, d int64, metric string) (int64, error) {
	m, err := ivf.ParseMetric(metric)
	if err != nil {
		return 0, err
	}
	if d < 1 || d > math.MaxInt32 {
		return 0, fmt.Errorf("%w: dimension %d", ivf.ErrParams, d)
	}
	ix, err := ivf.NewFromFactory(factory, int(d), m)
	if err != nil {
		return 0, err
	}
	if dir != "" {
		if err := ivf.CheckNewDir(dir); err != nil {
			return 0, err
		}
	}
	return register(ix, dir), nil
}

// open opens the index directory dir; a memory budget > 0 makes its
// searches read lists from disk into at most that many bytes of buffers
// (ivf.Index.MemoryBudget), set before any call can search.
func open(dir string, readOnly bool, memory int64) (int64, error) {
	if memory < 0 {
		return 0, fmt.Errorf("%w: memory budget %d bytes", ivf.ErrInput, memory)
	}
	ix, err := ivf.Open(dir, &ivf.OpenOptions{ReadOnly: readOnly})
	if err != nil {
		return 0, err
	}
	ix.MemoryBudget = memory
	return register(ix, ""), nil
}

func importFAISS(path, dir string, cosine bool) (int64, error) {
	ix, err := faissio.Import(path, dir, &faissio.ImportOptions{Cosine: cosine})
	if err != nil {
		return 0, err
	}
	return register(ix, ""), nil
}

// indexInfo is what shelf_info returns, as JSON.
type indexInfo struct {
	D         int    `json:"d"`
	NList     int    `json:"nlist"`
	M         int    `json:"m"`
	Flat      bool   `json:"flat"`
	Metric    string `json:"metric"`
	Factory   string `json:"factory"`
	CodeSize  int    `json:"code_size"`
	Trained   bool   `json:"is_trained"`
	ReadOnly  bool   `json:"read_only"`
	Dir       string `json:"dir"`
	NTotal    int64  `json:"ntotal"`
	NextID    int64  `json:"next_id"`
	Untrained string `json:"pending_dir,omitempty"`
	// The memory budget of searches (0: lists through the memory map),
	// and the reads they made from disk within it.
	MemoryBudget int64 `json:"memory_budget"`
	DiskReads    int64 `json:"disk_reads"`
	DiskBytes    int64 `json:"disk_read_bytes"`
}

func infoOf(hd *handle, ix *ivf.Index) indexInfo {
	hd.mu.Lock()
	pending := hd.dir
	hd.mu.Unlock()
	info := paramsInfo(ix.Params(), pending)
	info.Trained, info.ReadOnly, info.Dir = ix.IsTrained(), ix.ReadOnly(), ix.Dir()
	info.NTotal, info.NextID = ix.NTotal(), ix.NextID()
	info.MemoryBudget = ix.MemoryBudget
	info.DiskReads, info.DiskBytes = ix.ReadStats()
	return info
}

// paramsInfo is the info of an index with parameters p that holds
// nothing yet: an index being trained.
func paramsInfo(p ivf.Params, pending string) indexInfo {
	m := p.M
	if p.Flat {
		m = 0
	}
	return indexInfo{
		D: p.D, NList: p.NList, M: m, Flat: p.Flat, Metric: p.Metric.String(), Factory: p.Factory(),
		CodeSize: p.CodeSize(), Untrained: pending,
	}
}

// storageStats is the storage part of shelf_stats: the fields of `shelf
// stats --json` that ivf.StorageStats gives. What a read-only opener
// cannot know is null.
type storageStats struct {
	indexInfo
	FileBytes       int64   `json:"file_bytes"`
	UsedBytes       int64   `json:"used_bytes"`
	DataBytes       int64   `json:"data_bytes"`
	FreeBytes       int64   `json:"free_bytes"`
	PendingBytes    *int64  `json:"pending_bytes"`
	FreeExtents     *int    `json:"free_extents"`
	LargestFree     *int64  `json:"largest_free"`
	EmptyLists      int     `json:"empty_lists"`
	FullLists       int     `json:"full_lists"`
	MaxListLen      int     `json:"max_list_len"`
	ImbalanceFactor float64 `json:"imbalance_factor"`
	SizeHistogram   []int   `json:"size_histogram"`
	Generation      uint64  `json:"generation"`
	Seq             uint64  `json:"seq"`
}

// stats returns the index's parameters and, for an index directory, its
// storage statistics, as JSON.
func stats(hd *handle, ix *ivf.Index) ([]byte, error) {
	info := infoOf(hd, ix)
	if ix.Dir() == "" {
		return json.Marshal(info)
	}
	st, err := ix.StorageStats()
	if err != nil {
		return nil, err
	}
	out := storageStats{
		indexInfo: info, FileBytes: st.FileBytes, UsedBytes: st.UsedBytes, DataBytes: st.DataBytes,
		FreeBytes: st.FreeBytes, EmptyLists: st.EmptyLists, FullLists: st.FullLists, MaxListLen: st.MaxListLen,
		ImbalanceFactor: st.ImbalanceFactor, SizeHistogram: st.SizeHistogram, Generation: st.Generation, Seq: st.Seq,
	}
	out.NTotal = st.NTotal
	if !ix.ReadOnly() {
		out.PendingBytes, out.FreeExtents, out.LargestFree = &st.PendingBytes, &st.FreeExtents, &st.LargestFree
	}
	return json.Marshal(out)
}

// train trains the index of hd on n vectors and, for an index made by
// create with a directory, makes that directory an index holding no
// vectors (ToDisk). The caller holds hd.model for writing. A training
// cannot be stopped inside: when ctx is cancelled meanwhile, or when
// writing the directory fails, the trained model is thrown away and the
// index is untrained again, as it was.
func train(ctx context.Context, hd *handle, ix *ivf.Index, x []float32, n int, seed int64) error {
	if ix.IsTrained() {
		return fmt.Errorf("%w: index already trained", ivf.ErrParams)
	}
	hd.mu.Lock()
	dir := hd.dir
	hd.mu.Unlock()
	reset := func(err error) error {
		fresh, nerr := ivf.New(ix.Params())
		if nerr != nil {
			return errors.Join(err, nerr)
		}
		hd.mu.Lock()
		hd.ix = fresh
		hd.mu.Unlock()
		return err
	}
	if err := ix.Train(x, n, &ivf.TrainOptions{Seed: seed}); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return reset(interrupted("the training was thrown away, the index is untrained"))
	}
	if dir == "" {
		return nil
	}
	if err := ix.ToDisk(dir); err != nil {
		return reset(fmt.Errorf("%w (the index is untrained again)", err))
	}
	hd.mu.Lock()
	hd.dir = ""
	hd.mu.Unlock()
	return nil
}

// add adds n vectors (ids nil: sequential ids) in batches of ivf's add
// batch, each one commit, checking ctx between them; it returns the
// first sequential id and the vectors added.
func add(ctx context.Context, ix *ivf.Index, x []float32, n int, ids []int64) (first, added int64, err error) {
	d := ix.Params().D
	first = ix.NextID()
	for lo := 0; lo < n; lo += addChunk {
		if ctx.Err() != nil {
			return first, int64(lo), interrupted(fmt.Sprintf("%d of the %d vectors were added (rows 0 to %d), the rest not", lo, n, lo))
		}
		hi := min(lo+addChunk, n)
		if ids == nil {
			var f int64
			f, err = ix.Add(x[lo*d:hi*d], hi-lo)
			if lo == 0 {
				first = f
			}
		} else {
			err = ix.AddWithIDs(x[lo*d:hi*d], hi-lo, ids[lo:hi])
		}
		if err != nil {
			if lo > 0 {
				err = fmt.Errorf("rows %d on: %w (%d of the %d vectors were added (rows 0 to %d), the rest not)", lo, err, lo, n, lo)
			}
			return first, int64(lo), err
		}
	}
	return first, int64(n), nil
}

// addChunk is the vectors add hands to one Add call: Add commits every
// 65,536 vectors itself, so stopping between calls of this size stops
// where Add commits anyway.
const addChunk = 65536

// search searches nq queries for k results each into dist and ids (nq*k
// each, checked by checkResults), searchChunk queries per Search call,
// checking ctx between calls. Empty result slots get FAISS's values: id
// -1 and the largest float32 (the smallest, when larger is better)
// where ivf gives an infinity.
func search(ctx context.Context, ix *ivf.Index, q []float32, nq, k, nprobe int, dist []float32, ids []int64) error {
	if nprobe < 1 {
		return fmt.Errorf("%w: nprobe = %d", ivf.ErrInput, nprobe)
	}
	d := ix.Params().D
	for lo := 0; lo < nq; lo += searchChunk {
		if ctx.Err() != nil {
			return interrupted(fmt.Sprintf("%d of %d queries searched", lo, nq))
		}
		hi := min(lo+searchChunk, nq)
		dd, ii, err := ix.Search(q[lo*d:hi*d], hi-lo, k, nprobe)
		if err != nil {
			if lo > 0 {
				return fmt.Errorf("queries %d on: %w", lo, err)
			}
			return err
		}
		copy(dist[lo*k:hi*k], dd)
		copy(ids[lo*k:hi*k], ii)
	}
	for i, id := range ids[:nq*k] {
		if id == -1 {
			if math.IsInf(float64(dist[i]), 1) {
				dist[i] = math.MaxFloat32
			} else if math.IsInf(float64(dist[i]), -1) {
				dist[i] = -math.MaxFloat32
			}
		}
	}
	return nil
}

// mergeReport is what merge_blocks and merge_from return, as JSON.
type mergeReport struct {
	Vectors int64    `json:"vectors"`
	Blocks  int      `json:"blocks"`
	Indexes int      `json:"indexes"`
	Notes   []string `json:"notes"`
}

func reportJSON(r ivf.MergeReport) ([]byte, error) {
	notes := r.Notes
	if notes == nil {
		notes = []string{}
	}
	return json.Marshal(mergeReport{r.Vectors, r.Blocks, r.Indexes, notes})
}

// mergeOptions are the options merge_blocks and merge_from take from C.
func mergeOptions(idShift int64, autoShift, allowDuplicates bool, headroom float64) (*ivf.MergeOptions, error) {
	if err := checkHeadroom(headroom); err != nil {
		return nil, err
	}
	return &ivf.MergeOptions{IDShift: idShift, AutoShift: autoShift, AllowDuplicateIDs: allowDuplicates, Headroom: headroom}, nil
}

// checkHeadroom refuses a headroom that is not a share in [0, 10].
func checkHeadroom(h float64) error {
	if math.IsNaN(h) || h < 0 || h > 10 {
		return fmt.Errorf("%w: headroom %g (want a share of each list's size, 0 to 10)", ivf.ErrParams, h)
	}
	return nil
}

// mergeBlocks merges the code blocks of blockDir; ctx stops it after a
// commit (of up to 1,000 blocks).
func mergeBlocks(ctx context.Context, ix *ivf.Index, blockDir string, o *ivf.MergeOptions) ([]byte, error) {
	rep, err := ix.MergeBlocks(ctx, blockDir, o)
	if err != nil {
		return nil, err
	}
	return reportJSON(rep)
}

// mergeFrom merges every vector of other into ix in one commit.
func mergeFrom(ctx context.Context, ix, other *ivf.Index, o *ivf.MergeOptions) ([]byte, error) {
	rep, err := ix.Merge(ctx, "", []*ivf.Index{other}, o)
	if err != nil {
		return nil, err
	}
	return reportJSON(rep)
}

func compact(ix *ivf.Index, headroom float64) ([]byte, error) {
	if err := checkHeadroom(headroom); err != nil {
		return nil, err
	}
	st, err := ix.Compact(headroom)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]int64{"bytes_before": st.BytesBefore, "bytes_after": st.BytesAfter, "entries": st.Entries})
}

// encodeBlock writes block number of size rows (its n rows in x) into
// blockDir, unless that block file is there already, complete and of
// this training; it reports whether it wrote it.
func encodeBlock(ix *ivf.Index, blockDir string, number, size int64, x []float32, n int64) (bool, error) {
	if number < 0 || size < 1 || n < 0 || n > size || number > math.MaxInt64/size {
		return false, fmt.Errorf("%w: block %d of %d rows holding %d", ivf.ErrInput, number, size, n)
	}
	b := ivf.Block{Size: size, Number: number, First: number * size, Count: n}
	if err := ix.CheckBlock(blockDir, b); err == nil {
		return false, nil
	}
	if err := ix.EncodeBlock(blockDir, b, x); err != nil {
		return false, fmt.Errorf("block %d (rows %d to %d) into %s: %w", number, b.First, b.First+n, blockDir, err)
	}
	return true, nil
}

func exportFAISS(ix *ivf.Index, path, onDisk string, cosineAsIP bool) error {
	return faissio.Write(ix, path, &faissio.ExportOptions{OnDiskData: onDisk, CosineAsInnerProduct: cosineAsIP})
}
