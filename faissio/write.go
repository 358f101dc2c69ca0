package faissio

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/shelfdb/shelf/ivf"
	"github.com/shelfdb/shelf/rq"
)

// ExportOptions tune Write.
type ExportOptions struct {
	// OnDiskData, if set, writes the lists to this separate file in the
	// layout of FAISS's OnDiskInvertedLists, which FAISS memory-maps, and
	// only their table into the index file ("ilod"). The index file stores
	// the name as given: FAISS opens it relative to its working directory,
	// so give an absolute path unless FAISS runs where the files are
	// (Shelf's Import also looks next to the index file).
	OnDiskData string
	// CosineAsInnerProduct exports a cosine index as
	// METRIC_INNER_PRODUCT instead of METRIC_L2. By default FAISS ranks
	// a cosine index exactly as Shelf does (by the L2 distance between
	// the unit query and the stored vector) and returns squared L2
	// distances d: cosine similarity 1 - d/2. As inner product it scores
	// with the decoded vectors, which are not of unit norm: a worse
	// ranking for PQ codes (see Write).
	CosineAsInnerProduct bool
	// Progress, if set, receives the progress of the export: stage
	// "export", entries written of total.
	Progress func(stage string, done, total int64)
}

// writer writes FAISS fields; the first error sticks.
type writer struct {
	w   *bufio.Writer
	n   int64
	err error
	b   [8]byte
}

func (w *writer) bytes(b []byte) {
	if w.err != nil {
		return
	}
	var n int
	n, w.err = w.w.Write(b)
	w.n += int64(n)
}

func (w *writer) u8(v byte) { w.bytes([]byte{v}) }

func (w *writer) i32(v int32) {
	binary.LittleEndian.PutUint32(w.b[:4], uint32(v))
	w.bytes(w.b[:4])
}

func (w *writer) u64(v uint64) {
	binary.LittleEndian.PutUint64(w.b[:], v)
	w.bytes(w.b[:])
}

func (w *writer) tag(s string) { w.bytes([]byte(s)) }

func (w *writer) f32(v float32) {
	binary.LittleEndian.PutUint32(w.b[:4], math.Float32bits(v))
	w.bytes(w.b[:4])
}

func (w *writer) floats(v []float32) {
	w.u64(uint64(len(v)))
	var buf [4096]byte
	for len(v) > 0 {
		k := min(len(v), len(buf)/4)
		for i, x := range v[:k] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
		}
		w.bytes(buf[:4*k])
		v = v[k:]
	}
}

func (w *writer) header(d int, ntotal int64, metric int32) {
	w.i32(int32(d))
	w.u64(uint64(ntotal))
	w.u64(1 << 20) // unused fields, as FAISS writes them
	w.u64(1 << 20)
	w.u8(1) // is_trained
	w.i32(metric)
}

// ids writes ids as int64 little endian through buf.
func (w *writer) ids(ids []int64, buf []byte) []byte {
	if cap(buf) < 8*len(ids) {
		buf = make([]byte, 8*len(ids))
	}
	buf = buf[:8*len(ids)]
	for i, id := range ids {
		binary.LittleEndian.PutUint64(buf[8*i:], uint64(id))
	}
	w.bytes(buf)
	return buf
}

// createAtomic is a file written to path+".tmp" and renamed to path when
// committed, fsynced; abort removes it.
type createAtomic struct {
	path string
	f    *os.File
	w    *writer
}

func newAtomic(path string) (*createAtomic, error) {
	f, err := os.OpenFile(path+".tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &createAtomic{path: path, f: f, w: &writer{w: bufio.NewWriterSize(f, 4<<20)}}, nil
}

func (c *createAtomic) abort() {
	c.f.Close()
	os.Remove(c.path + ".tmp")
}

func (c *createAtomic) commit() error {
	err := c.w.err
	if err == nil {
		err = c.w.w.Flush()
	}
	if err == nil {
		err = c.f.Sync()
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(c.path+".tmp", c.path)
	}
	if err != nil {
		os.Remove(c.path + ".tmp")
		return fmt.Errorf("faissio: write %s: %w", c.path, err)
	}
	d, err := os.Open(filepath.Dir(c.path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Write writes ix as a FAISS index file that faiss.read_index (FAISS
// 1.7.3 and later) reads: IndexIVFPQ, IndexIVFFlat or (IVF,RQ)
// IndexIVFResidualQuantizer with an IndexFlatL2 /
// IndexFlatIP quantizer holding the centroids, nprobe 1, lists inline
// (ArrayInvertedLists) or, with opts.OnDiskData, in a separate
// OnDiskInvertedLists data file. The lists are streamed from a snapshot
// (ix.Lists().Snapshot(): in memory or on disk, beside a writer), one at a
// time; each file is written to path+".tmp", fsynced and renamed.
//
// Metrics: L2 is METRIC_L2, InnerProduct METRIC_INNER_PRODUCT, and Cosine
// is exported as METRIC_L2 over the normalized vectors Shelf stores, which
// FAISS ranks exactly as Shelf does: FAISS users L2-normalize their
// queries and read a distance d as cosine similarity 1 - d/2. With
// opts.CosineAsInnerProduct it is METRIC_INNER_PRODUCT instead, the usual
// FAISS recipe for cosine, with inner products with the stored (for PQ,
// decoded) vectors as scores; that ranking differs from Shelf's: for
// IVF-Flat only in the lists probed (none with every list probed); for PQ
// codes also in the order, since a decoded vector is not of unit norm,
// and the inner product with it is the less accurate ranking (see the
// README).
//
// An IVF,RQ index is written as FAISS's IVF<n>,RQ<M>x8_Ncqint8 (search
// type ST_norm_cqint8, Shelf's norm levels as its qnorm), whose codes are
// Shelf's byte for byte and which FAISS scores as Shelf does (see writeRQ).
func Write(ix *ivf.Index, path string, opts *ExportOptions) error {
	if !ix.IsTrained() {
		return ivf.ErrNotTrained
	}
	var o ExportOptions
	if opts != nil {
		o = *opts
	}
	if o.OnDiskData != "" && filepath.Clean(o.OnDiskData) == filepath.Clean(path) {
		return fmt.Errorf("%w: the on-disk list data file and the index file are both %s", ivf.ErrParams, path)
	}
	p := ix.Params()
	if !p.Flat && p.Nbits != 8 {
		return fmt.Errorf("%w: PQ with %d-bit codes", ivf.ErrParams, p.Nbits)
	}
	snap, err := ix.Lists().Snapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	nlist, cs := p.NList, p.CodeSize()
	sizes := make([]int64, nlist)
	var total int64
	for l := range sizes {
		n, err := snap.ListLen(l)
		if err != nil {
			return err
		}
		sizes[l] = int64(n)
		total += int64(n)
	}
	metric := int32(metricL2)
	if p.Metric == ivf.InnerProduct || p.Metric == ivf.Cosine && o.CosineAsInnerProduct {
		metric = metricIP
	}

	idx, err := newAtomic(path)
	if err != nil {
		return fmt.Errorf("faissio: write %s: %w", path, err)
	}
	var data *createAtomic
	defer func() {
		if idx != nil {
			idx.abort()
		}
		if data != nil {
			data.abort()
		}
	}()
	w := idx.w
	switch {
	case p.Flat:
		w.tag("IwFl")
	case p.RQ:
		w.tag("IwRQ")
	default:
		w.tag("IwPQ")
	}
	w.header(p.D, total, metric)
	w.u64(uint64(nlist))
	w.u64(1) // nprobe
	if metric == metricL2 {
		w.tag("IxF2")
	} else {
		w.tag("IxFI")
	}
	w.header(p.D, int64(nlist), metric)
	w.floats(ix.Centroids())
	w.u8(0) // no direct map
	w.u64(0)
	if p.RQ {
		writeRQ(w, ix.RQ(), p.ByResidual)
	} else if !p.Flat {
		if p.ByResidual {
			w.u8(1)
		} else {
			w.u8(0)
		}
		w.u64(uint64(cs))
		w.u64(uint64(p.D))
		q := ix.PQ()
		w.u64(uint64(q.M))
		w.u64(uint64(q.Nbits))
		w.floats(q.Centroids)
	}

	var done int64
	progress := func(n int64) {
		done += n
		if o.Progress != nil && n > 0 {
			o.Progress("export", done, total)
		}
	}
	var buf []byte
	// writeLists streams every non-empty list, codes then ids, into w.
	writeLists := func(w *writer) error {
		for l := range sizes {
			if sizes[l] == 0 {
				continue
			}
			ids, codes, err := snap.ReadList(l)
			if err != nil {
				return err
			}
			if int64(len(ids)) != sizes[l] || len(codes) != len(ids)*cs {
				return fmt.Errorf("%w: list %d changed during the export", ivf.ErrCorrupt, l)
			}
			w.bytes(codes)
			buf = w.ids(ids, buf)
			progress(sizes[l])
		}
		return nil
	}
	if o.OnDiskData == "" {
		w.tag("ilar")
		w.u64(uint64(nlist))
		w.u64(uint64(cs))
		w.tag("full")
		w.u64(uint64(nlist))
		for _, n := range sizes {
			w.u64(uint64(n))
		}
		if err := writeLists(w); err != nil {
			return err
		}
	} else {
		if data, err = newAtomic(o.OnDiskData); err != nil {
			return fmt.Errorf("faissio: write %s: %w", o.OnDiskData, err)
		}
		dw := data.w
		if err := writeLists(dw); err != nil {
			return err
		}
		totsize := dw.n
		var slots [][2]uint64
		if totsize == 0 {
			// FAISS maps totsize bytes, and cannot map none: an empty
			// index gets 8 free bytes.
			dw.u64(0)
			slots = append(slots, [2]uint64{0, 8})
			totsize = 8
		}
		w.tag("ilod")
		w.u64(uint64(nlist))
		w.u64(uint64(cs))
		w.u64(uint64(nlist))
		var off int64
		for _, n := range sizes {
			w.u64(uint64(n))
			w.u64(uint64(n))
			w.u64(uint64(off))
			off += n * int64(cs+8)
		}
		w.u64(uint64(len(slots)))
		for _, s := range slots {
			w.u64(s[0])
			w.u64(s[1])
		}
		w.u64(uint64(len(o.OnDiskData)))
		w.bytes([]byte(o.OnDiskData))
		w.u64(uint64(totsize))
		if err := data.commit(); err != nil {
			data = nil
			return err
		}
		data = nil
	}
	err = idx.commit()
	idx = nil
	return err
}

// writeRQ writes the code size, the ResidualQuantizer, by_residual and
// use_precomputed_table of an "IwRQ" file (layout in rqfile.go). FAISS
// searches ST_norm_cqint8 codes with tables, as Shelf does: ||q - c||^2 +
// level[norm byte] - 2 <q - c, decoded> by residual for L2 (||q||^2 +
// level - 2 <q, decoded> otherwise), <q, c> + <q, decoded> for inner
// product. norm_min and norm_max are, in FAISS, the extreme squared norms
// of the training set, which cqint8 codes do not use; Shelf did not keep
// them and writes the extreme levels. train_type is FAISS's Train_default
// (plain k-means per layer, as Shelf trains).
func writeRQ(w *writer, q *rq.RQ, byResidual bool) {
	w.u64(uint64(q.CodeSize()))
	w.u64(uint64(q.D))
	w.u64(uint64(q.M))
	w.u64(uint64(q.M)) // nbits, one per layer
	for range q.M {
		w.u64(8)
	}
	w.u8(1) // is_trained
	w.floats(q.Codebooks)
	w.i32(stNormCqint8)
	w.f32(q.NormLevels[0])
	w.f32(q.NormLevels[len(q.NormLevels)-1])
	w.floats(q.NormLevels) // qnorm
	w.i32(rqTrainDefault)
	w.i32(int32(max(1, q.BeamSize)))
	if byResidual {
		w.u8(1)
	} else {
		w.u8(0)
	}
	w.i32(0) // use_precomputed_table
}
