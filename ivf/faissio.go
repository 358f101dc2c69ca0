package ivf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/shelfdb/shelf/pq"
)

// FAISS index files (faiss.write_index / faiss.read_index).
//
// The format is FAISS's serialization of its C++ objects, little endian:
// a fourcc names each polymorphic object, then its fields in declaration
// order. What Shelf reads and writes:
//
//	IndexIVFPQ "IwPQ" | IndexIVFFlat "IwFl":
//	  index header   d int32, ntotal int64, two unused int64, is_trained u8,
//	                 metric int32 (0 inner product, 1 L2; a float argument
//	                 follows for the others)
//	  nlist, nprobe  uint64
//	  quantizer      "IxF2" | "IxFI" | "IxFl" + index header, then the
//	                 centroids: uint64 count of floats + float32 values
//	  direct map     type u8, uint64 count + int64 values, and for type 2
//	                 (hashtable) uint64 count + (int64, int64) pairs
//	  PQ (IwPQ only) by_residual u8, code_size uint64, then the product
//	                 quantizer: d, M, nbits uint64, uint64 count + floats
//	                 (M x 2^nbits x d/M)
//	  inverted lists "ilar": nlist, code_size uint64, then the list sizes,
//	                 "full" (uint64 count = nlist + nlist uint64 sizes) or
//	                 "sprs" (uint64 count + (list, size) uint64 pairs), then
//	                 for each non-empty list its codes, then its int64 ids.
//	                 "ilod" (OnDiskInvertedLists): nlist, code_size uint64,
//	                 uint64 count + (size, capacity, offset) uint64 triples,
//	                 uint64 count + (offset, capacity) uint64 free slots,
//	                 uint64 length + the data file name, totsize uint64; in
//	                 the data file list l holds codes[capacity*code_size]
//	                 then ids[capacity] int64 at its offset.
//
// The legacy formats "IvPQ", "IvFL" and "IvFl" (FAISS before 2018) keep
// each list's ids as a vector after the quantizer and its codes as a
// vector after the PQ; they are read too.

// ErrUnsupported marks a FAISS file of a kind Shelf does not read: another
// index type, quantizer, metric or list storage.
var ErrUnsupported = errors.New("ivf: unsupported FAISS index")

// FAISS metric codes.
const (
	faissMetricIP = 0
	faissMetricL2 = 1
)

// FAISSInfo describes a FAISS index file.
type FAISSInfo struct {
	// Type is the FAISS class: "IndexIVFPQ" or "IndexIVFFlat".
	Type string
	// FourCC is the file's type tag ("IwPQ", "IwFl", or a legacy one).
	FourCC string
	// Quantizer is the coarse quantizer's class: "IndexFlatL2",
	// "IndexFlatIP" or "IndexFlat".
	Quantizer string
	D, NList  int
	// M and Nbits describe the PQ (0 for IVF-Flat).
	M, Nbits int
	// Metric is L2 or InnerProduct.
	Metric     Metric
	ByResidual bool
	NTotal     int64
	// Lists is how the file stores the lists: "ilar" (in the file) or
	// "ilod" (FAISS OnDiskInvertedLists: in DataFile); "legacy" for the
	// pre-2018 formats.
	Lists string
	// DataFile is the on-disk list data file that was found ("ilod").
	DataFile string
	// ListBytes is the size of the list payload: codes and ids.
	ListBytes int64
}

// ImportOptions tune ImportFAISS and ReadFAISSWith.
type ImportOptions struct {
	// Progress, if set, receives the progress of the import: stage
	// "import", entries done of total.
	Progress func(stage string, done, total int64)
	// Cosine imports the index as a cosine index: for files exported from
	// a Shelf cosine index, or FAISS indexes (inner product or L2) of
	// L2-normalized vectors. Shelf then normalizes added vectors and
	// queries itself, and ranks by the L2 distance between unit vectors.
	Cosine bool

	// openData opens an on-disk list data file (tests replace it).
	openData func(name string) (dataFile, error)
}

// dataFile is an opened list data file.
type dataFile interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

type osDataFile struct {
	*os.File
	size int64
}

func (f osDataFile) Size() int64 { return f.size }

// openRegular opens a regular file for reading (never a FIFO or device,
// whose open could block or whose size means nothing).
func openRegular(name string) (dataFile, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osDataFile{f, st.Size()}, nil
}

// ExportOptions tune WriteFAISS.
type ExportOptions struct {
	// OnDiskData, if set, writes the lists to this separate file in the
	// layout of FAISS's OnDiskInvertedLists, which FAISS memory-maps, and
	// only their table into the index file ("ilod"). The index file stores
	// the name as given: FAISS opens it relative to its working directory,
	// so give an absolute path unless FAISS runs where the files are
	// (Shelf's ImportFAISS also looks next to the index file).
	OnDiskData string
	// CosineAsInnerProduct exports a cosine index as
	// METRIC_INNER_PRODUCT instead of METRIC_L2. By default FAISS ranks
	// a cosine index exactly as Shelf does (by the L2 distance between
	// the unit query and the stored vector) and returns squared L2
	// distances d: cosine similarity 1 - d/2. As inner product it scores
	// with the decoded vectors, which are not of unit norm: a worse
	// ranking for PQ codes (see WriteFAISS).
	CosineAsInnerProduct bool
	// Progress, if set, receives the progress of the export: stage
	// "export", entries written of total.
	Progress func(stage string, done, total int64)
}

// faissTypeNames names the FAISS classes behind fourccs, for errors.
var faissTypeNames = map[string]string{
	"IwPQ": "IndexIVFPQ", "IvPQ": "IndexIVFPQ", "IwFl": "IndexIVFFlat", "IvFl": "IndexIVFFlat", "IvFL": "IndexIVFFlat",
	"IxF2": "IndexFlatL2", "IxFI": "IndexFlatIP", "IxFl": "IndexFlat",
	"IwQR": "IndexIVFPQR", "IvQR": "IndexIVFPQR", "IwPf": "IndexIVFPQFastScan",
	"IwSq": "IndexIVFScalarQuantizer", "IwSQ": "IndexIVFScalarQuantizer", "IvSQ": "IndexIVFScalarQuantizer",
	"IwFd": "IndexIVFFlatDedup", "IwSh": "IndexIVFSpectralHash", "IwIQ": "IndexIVFIndependentQuantizer",
	"IwRQ": "IndexIVFResidualQuantizer", "IwLS": "IndexIVFLocalSearchQuantizer",
	"IwPR": "IndexIVFProductResidualQuantizer", "IwPL": "IndexIVFProductLocalSearchQuantizer",
	"IVLf": "IndexIVFLocalSearchQuantizerFastScan", "IVRf": "IndexIVFResidualQuantizerFastScan",
	"NPLf": "IndexIVFProductLocalSearchQuantizerFastScan", "NPRf": "IndexIVFProductResidualQuantizerFastScan",
	"Iwrq": "IndexIVFRaBitQ", "Ixrq": "IndexRaBitQ",
	"IxPT": "IndexPreTransform", "IxMp": "IndexIDMap", "IxM2": "IndexIDMap2", "IxRF": "IndexRefine",
	"IxPQ": "IndexPQ", "IxPo": "IndexPQ", "IxPq": "IndexPQ", "IPfs": "IndexPQFastScan",
	"IxSQ": "IndexScalarQuantizer", "IxHE": "IndexLSH", "IxHe": "IndexLSH",
	"IxRQ": "IndexResidualQuantizer", "IxRq": "IndexResidualQuantizer", "IxLS": "IndexLocalSearchQuantizer",
	"IxPR": "IndexProductResidualQuantizer", "IxPL": "IndexProductLocalSearchQuantizer",
	"ImRQ": "ResidualCoarseQuantizer", "Imiq": "MultiIndexQuantizer", "Ix2L": "Index2Layer", "IxLa": "IndexLattice",
	"IHNf": "IndexHNSWFlat", "IHNp": "IndexHNSWPQ", "IHNs": "IndexHNSWSQ", "IHN2": "IndexHNSW2Level",
	"IHNc": "IndexHNSWCagra", "IHc2": "IndexHNSWCagra",
	"INSf": "IndexNSGFlat", "INSp": "IndexNSGPQ", "INSs": "IndexNSGSQ", "INNf": "IndexNNDescentFlat",
	"IRMf": "IndexRowwiseMinMax", "IRMh": "IndexRowwiseMinMaxFP16", "null": "no index",
	"IBxF": "IndexBinaryFlat", "IBwF": "IndexBinaryIVF", "IBFf": "IndexBinaryFromFloat", "IBHf": "IndexBinaryHNSW",
	"IBMp": "IndexBinaryIDMap", "IBM2": "IndexBinaryIDMap2", "IBHh": "IndexBinaryHash", "IBHm": "IndexBinaryMultiHash",
	"ilar": "ArrayInvertedLists", "ilod": "OnDiskInvertedLists", "il00": "no inverted lists", "ilbl": "BlockInvertedLists",
}

func faissName(tag string) string {
	if n, ok := faissTypeNames[tag]; ok {
		return fmt.Sprintf("%q (%s)", tag, n)
	}
	return fmt.Sprintf("%q", tag)
}

// printableTag reports whether a fourcc looks like one (letters, digits),
// so an unknown one is a type this reader does not know rather than
// garbage.
func printableTag(tag string) bool {
	for _, c := range []byte(tag) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// fReader parses a FAISS file through a read-ahead window, checking every
// length against what is left of the file before using or allocating it.
type fReader struct {
	r      io.ReaderAt
	size   int64
	off    int64
	name   string
	win    []byte
	winOff int64
	buf    []byte
}

const fWindow = 1 << 16

func (r *fReader) corrupt(field string, at int64, format string, a ...any) error {
	return fmt.Errorf("%w: FAISS file %s: %s at byte %d: %s", ErrCorrupt, r.name, field, at, fmt.Sprintf(format, a...))
}

func (r *fReader) unsupported(format string, a ...any) error {
	return fmt.Errorf("%w: FAISS file %s: %s", ErrUnsupported, r.name, fmt.Sprintf(format, a...))
}

func (r *fReader) left() int64 { return r.size - r.off }

// next returns the next n bytes; the slice is valid until the next call.
func (r *fReader) next(field string, n int64) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, r.corrupt(field, r.off, "needs %d bytes, the file has %d left (truncated?)", n, r.left())
	}
	at := r.off
	if at >= r.winOff && at+n <= r.winOff+int64(len(r.win)) {
		r.off += n
		return r.win[at-r.winOff : at-r.winOff+n], nil
	}
	var b []byte
	if n > fWindow {
		b = make([]byte, n)
	} else {
		if r.buf == nil {
			r.buf = make([]byte, min(fWindow, r.size))
		}
		b = r.buf[:min(int64(fWindow), r.size-at)]
	}
	if _, err := r.r.ReadAt(b, at); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, r.corrupt(field, at, "file ends early")
		}
		return nil, fmt.Errorf("ivf: read FAISS file %s: %w", r.name, err)
	}
	r.off += n
	if n > fWindow {
		return b, nil
	}
	r.win, r.winOff = b, at
	return b[:n], nil
}

func (r *fReader) u8(field string) (byte, error) {
	b, err := r.next(field, 1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *fReader) bool(field string) (bool, error) {
	at := r.off
	b, err := r.u8(field)
	if err == nil && b > 1 {
		err = r.corrupt(field, at, "boolean byte %d", b)
	}
	return b == 1, err
}

func (r *fReader) i32(field string) (int32, error) {
	b, err := r.next(field, 4)
	if err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}

func (r *fReader) tag(field string) (string, error) {
	b, err := r.next(field, 4)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (r *fReader) u64(field string) (uint64, error) {
	b, err := r.next(field, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// small reads a uint64 that must be in [lo, hi].
func (r *fReader) small(field string, lo, hi uint64) (int64, error) {
	at := r.off
	v, err := r.u64(field)
	if err != nil {
		return 0, err
	}
	if v < lo || v > hi {
		return 0, r.corrupt(field, at, "value %d out of range [%d, %d]", v, lo, hi)
	}
	return int64(v), nil
}

// count reads a vector length of elements of elem bytes and checks that
// they fit in the rest of the file.
func (r *fReader) count(field string, elem int64) (int64, error) {
	at := r.off
	v, err := r.u64(field)
	if err != nil {
		return 0, err
	}
	if v > uint64(r.left()/elem) {
		return 0, r.corrupt(field, at, "%d elements of %d bytes, the file has %d bytes left", v, elem, r.left())
	}
	return int64(v), nil
}

// floats reads n float32 values (n checked against the file first) and
// refuses NaN and infinities.
func (r *fReader) floats(field string, n int64) ([]float32, error) {
	at := r.off
	if n > r.left()/4 {
		return nil, r.corrupt(field, at, "%d floats, the file has %d bytes left", n, r.left())
	}
	out := make([]float32, n)
	for done := int64(0); done < n; {
		k := min(n-done, fWindow/4)
		b, err := r.next(field, 4*k)
		if err != nil {
			return nil, err
		}
		for i := range k {
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, r.corrupt(field, at+4*(done+i), "value %d is %v", done+i, v)
			}
			out[done+i] = v
		}
		done += k
	}
	return out, nil
}

func (r *fReader) skip(field string, n int64) error {
	if n < 0 || n > r.left() {
		return r.corrupt(field, r.off, "needs %d bytes, the file has %d left (truncated?)", n, r.left())
	}
	r.off += n
	return nil
}

// faissHeader is FAISS's Index header.
type faissHeader struct {
	d       int
	ntotal  int64
	trained bool
	metric  int32
}

func (r *fReader) header(what string) (faissHeader, error) {
	var h faissHeader
	at := r.off
	d, err := r.i32(what + " d")
	if err != nil {
		return h, err
	}
	if d <= 0 {
		return h, r.corrupt(what+" d", at, "dimension %d", d)
	}
	h.d = int(d)
	at = r.off
	nt, err := r.u64(what + " ntotal")
	if err != nil {
		return h, err
	}
	if int64(nt) < 0 {
		return h, r.corrupt(what+" ntotal", at, "ntotal %d", int64(nt))
	}
	h.ntotal = int64(nt)
	if err := r.skip(what+" unused fields", 16); err != nil {
		return h, err
	}
	if h.trained, err = r.bool(what + " is_trained"); err != nil {
		return h, err
	}
	at = r.off
	if h.metric, err = r.i32(what + " metric_type"); err != nil {
		return h, err
	}
	if h.metric < 0 || h.metric > 64 {
		return h, r.corrupt(what+" metric_type", at, "metric %d", h.metric)
	}
	if h.metric > faissMetricL2 {
		names := map[int32]string{2: "METRIC_L1", 3: "METRIC_Linf", 4: "METRIC_Lp", 20: "METRIC_Canberra",
			21: "METRIC_BrayCurtis", 22: "METRIC_JensenShannon", 23: "METRIC_Jaccard"}
		name := names[h.metric]
		if name == "" {
			name = fmt.Sprintf("metric %d", h.metric)
		}
		if _, err := r.next(what+" metric_arg", 4); err != nil {
			return h, err
		}
		return h, r.unsupported("%s uses %s; Shelf reads METRIC_L2 and METRIC_INNER_PRODUCT", what, name)
	}
	return h, nil
}

// faissFile is a parsed FAISS IVF index file: the model in memory, the
// lists as offsets into the file holding them.
type faissFile struct {
	info    FAISSInfo
	p       Params
	cents   []float32
	q       *pq.PQ
	sizes   []int64
	codeOff []int64
	idOff   []int64
	name    string      // the index file
	data    io.ReaderAt // the file holding the lists
	dname   string
	closer  io.Closer // the separate data file, if any
}

func (f *faissFile) close() {
	if f.closer != nil {
		f.closer.Close()
		f.closer = nil
	}
}

// parseFAISS reads the model and the layout of the lists of a FAISS file
// of size bytes named name; an "ilod" data file is opened with open.
func parseFAISS(ra io.ReaderAt, size int64, name string, open func(string) (dataFile, error)) (*faissFile, error) {
	r := &fReader{r: ra, size: size, name: name}
	ff := &faissFile{name: name, data: ra, dname: name}
	ok := false
	defer func() {
		if !ok {
			ff.close()
		}
	}()
	info := &ff.info
	top, err := r.tag("index type")
	if err != nil {
		return nil, err
	}
	info.FourCC = top
	switch top {
	case "IwPQ", "IvPQ":
		info.Type = "IndexIVFPQ"
	case "IwFl", "IvFL", "IvFl":
		info.Type = "IndexIVFFlat"
	default:
		if !printableTag(top) {
			return nil, r.corrupt("index type", 0, "%q is not a FAISS index type: not a FAISS index file", top)
		}
		return nil, r.unsupported("index type %s is not supported; Shelf reads IndexIVFPQ (\"IwPQ\") and IndexIVFFlat (\"IwFl\")", faissName(top))
	}
	legacy := top[1] == 'v'
	flat := info.Type == "IndexIVFFlat"
	h, err := r.header("index header")
	if err != nil {
		return nil, err
	}
	if !h.trained {
		return nil, fmt.Errorf("%w: FAISS file %s: the index is not trained", ErrNotTrained, name)
	}
	info.D, info.NTotal = h.d, h.ntotal
	info.Metric = L2
	if h.metric == faissMetricIP {
		info.Metric = InnerProduct
	}
	nlistAt := r.off
	nlist, err := r.small("nlist", 1, 1<<40)
	if err != nil {
		return nil, err
	}
	if _, err := r.u64("nprobe"); err != nil {
		return nil, err
	}

	// Coarse quantizer: a flat index of the centroids.
	qat := r.off
	qt, err := r.tag("quantizer type")
	if err != nil {
		return nil, err
	}
	switch qt {
	case "IxF2", "IxFI", "IxFl":
	default:
		if !printableTag(qt) {
			return nil, r.corrupt("quantizer type", qat, "%q is not a FAISS index type", qt)
		}
		return nil, r.unsupported("quantizer %s is not supported; Shelf reads IndexFlatL2/IP quantizers", faissName(qt))
	}
	info.Quantizer = faissTypeNames[qt]
	qh, err := r.header("quantizer header")
	if err != nil {
		return nil, err
	}
	if qh.d != h.d {
		return nil, r.corrupt("quantizer d", qat+4, "quantizer of dimension %d in an index of dimension %d", qh.d, h.d)
	}
	if qh.ntotal != nlist {
		return nil, r.corrupt("quantizer ntotal", qat+8, "%d centroids for %d lists (nlist at byte %d)", qh.ntotal, nlist, nlistAt)
	}
	cat := r.off
	nc, err := r.count("centroids", 4)
	if err != nil {
		return nil, err
	}
	if nc/int64(h.d) != nlist || nc%int64(h.d) != 0 {
		return nil, r.corrupt("centroids", cat, "%d floats for %d centroids of dimension %d", nc, nlist, h.d)
	}
	if nlist > 1<<26 || h.d > 1<<16 {
		return nil, r.unsupported("d=%d, nlist=%d: Shelf indexes have at most 65536 dimensions and 2^26 lists", h.d, nlist)
	}
	ff.cents, err = r.floats("centroids", nc)
	if err != nil {
		return nil, err
	}
	info.NList = int(nlist)
	if qh.metric != h.metric && !unitCentroids(ff.cents, h.d) {
		return nil, r.unsupported("the quantizer (%s) and the index use different metrics; Shelf probes lists with the index's metric", faissName(qt))
	}

	ff.sizes = make([]int64, nlist)
	ff.codeOff = make([]int64, nlist)
	ff.idOff = make([]int64, nlist)
	if legacy {
		// Each list's ids as a vector.
		for l := range ff.sizes {
			n, err := r.count(fmt.Sprintf("ids of list %d", l), 8)
			if err != nil {
				return nil, err
			}
			ff.sizes[l], ff.idOff[l] = n, r.off
			if err := r.skip(fmt.Sprintf("ids of list %d", l), 8*n); err != nil {
				return nil, err
			}
		}
	}

	// Direct map (id -> list, position): read past; Shelf builds its own.
	dmAt := r.off
	dm, err := r.u8("direct map type")
	if err != nil {
		return nil, err
	}
	if dm > 2 {
		return nil, r.corrupt("direct map type", dmAt, "type %d", dm)
	}
	n, err := r.count("direct map array", 8)
	if err != nil {
		return nil, err
	}
	if err := r.skip("direct map array", 8*n); err != nil {
		return nil, err
	}
	if dm == 2 {
		if n, err = r.count("direct map hashtable", 16); err != nil {
			return nil, err
		}
		if err := r.skip("direct map hashtable", 16*n); err != nil {
			return nil, err
		}
	}

	cs := 4 * h.d
	info.ByResidual = true
	if !flat {
		if info.ByResidual, err = r.bool("by_residual"); err != nil {
			return nil, err
		}
		csAt := r.off
		c, err := r.small("code_size", 1, 1<<20)
		if err != nil {
			return nil, err
		}
		pqAt := r.off
		pd, err := r.small("PQ d", 1, 1<<16)
		if err != nil {
			return nil, err
		}
		if pd != int64(h.d) {
			return nil, r.corrupt("PQ d", pqAt, "PQ of dimension %d in an index of dimension %d", pd, h.d)
		}
		pm, err := r.small("PQ M", 1, 1<<16)
		if err != nil {
			return nil, err
		}
		if pd%pm != 0 {
			return nil, r.corrupt("PQ M", pqAt+8, "M = %d does not divide d = %d", pm, pd)
		}
		nbAt := r.off
		nbits, err := r.small("PQ nbits", 1, 64)
		if err != nil {
			return nil, err
		}
		if nbits != 8 {
			return nil, r.unsupported("PQ%dx%d: nbits = %d (at byte %d); Shelf reads 8-bit PQ codes", pm, nbits, nbits, nbAt)
		}
		if c != pm {
			return nil, r.corrupt("code_size", csAt, "code size %d for PQ%d", c, pm)
		}
		cat := r.off
		npq, err := r.count("PQ centroids", 4)
		if err != nil {
			return nil, err
		}
		if npq != pd<<nbits {
			return nil, r.corrupt("PQ centroids", cat, "%d floats, PQ%d of dimension %d needs %d", npq, pm, pd, pd<<nbits)
		}
		cents, err := r.floats("PQ centroids", npq)
		if err != nil {
			return nil, err
		}
		ff.q = &pq.PQ{D: int(pd), M: int(pm), Nbits: int(nbits), Dsub: int(pd / pm), Ksub: 1 << nbits, Centroids: cents}
		info.M, info.Nbits = int(pm), int(nbits)
		cs = int(c)
	}
	ff.p = Params{D: h.d, NList: int(nlist), M: info.M, Nbits: info.Nbits, Flat: flat, Metric: info.Metric, ByResidual: info.ByResidual}
	if flat {
		ff.p.Nbits = 8 // as the factory sets it
	}
	if err := ff.p.Validate(); err != nil {
		return nil, r.unsupported("%v", err)
	}

	var total int64
	if legacy {
		// Each list's codes as a vector (of floats for "IvFl").
		unit := int64(1)
		if top == "IvFl" {
			unit = 4
		}
		info.Lists = "legacy"
		for l := range ff.sizes {
			field := fmt.Sprintf("codes of list %d", l)
			at := r.off
			n, err := r.count(field, unit)
			if err != nil {
				return nil, err
			}
			if n*unit != ff.sizes[l]*int64(cs) {
				return nil, r.corrupt(field, at, "%d bytes of codes for %d ids of %d-byte codes", n*unit, ff.sizes[l], cs)
			}
			ff.codeOff[l] = r.off
			if err := r.skip(field, n*unit); err != nil {
				return nil, err
			}
			total += ff.sizes[l]
		}
	} else {
		if total, err = ff.readLists(r, cs, name, open); err != nil {
			return nil, err
		}
	}
	if r.off != r.size {
		return nil, r.corrupt("end of index", r.off, "%d unexpected bytes after the inverted lists", r.size-r.off)
	}
	if total != h.ntotal {
		return nil, r.corrupt("index header ntotal", 8, "ntotal %d, the lists hold %d entries", h.ntotal, total)
	}
	info.ListBytes = total * int64(cs+8)
	ok = true
	return ff, nil
}

// readLists reads the inverted lists object ("ilar" or "ilod") and returns
// the number of entries.
func (ff *faissFile) readLists(r *fReader, cs int, name string, open func(string) (dataFile, error)) (int64, error) {
	nlist := int64(len(ff.sizes))
	at := r.off
	lt, err := r.tag("inverted lists type")
	if err != nil {
		return 0, err
	}
	switch lt {
	case "ilar", "ilod":
	default:
		if !printableTag(lt) {
			return 0, r.corrupt("inverted lists type", at, "%q is not a FAISS inverted lists type", lt)
		}
		return 0, r.unsupported("inverted lists %s are not supported; Shelf reads ArrayInvertedLists (\"ilar\") and OnDiskInvertedLists (\"ilod\")", faissName(lt))
	}
	ff.info.Lists = lt
	at = r.off
	if v, err := r.u64("inverted lists nlist"); err != nil {
		return 0, err
	} else if v != uint64(nlist) {
		return 0, r.corrupt("inverted lists nlist", at, "%d lists, the index has %d", v, nlist)
	}
	at = r.off
	if v, err := r.u64("inverted lists code_size"); err != nil {
		return 0, err
	} else if v != uint64(cs) {
		return 0, r.corrupt("inverted lists code_size", at, "codes of %d bytes, the index has %d", v, cs)
	}
	entry := int64(cs) + 8
	if lt == "ilod" {
		return ff.readOnDisk(r, entry, name, open)
	}
	at = r.off
	st, err := r.tag("list sizes type")
	if err != nil {
		return 0, err
	}
	switch st {
	case "full":
		at := r.off
		n, err := r.count("list sizes", 8)
		if err != nil {
			return 0, err
		}
		if n != nlist {
			return 0, r.corrupt("list sizes", at, "%d sizes for %d lists", n, nlist)
		}
		for l := range ff.sizes {
			v, err := r.u64("list sizes")
			if err != nil {
				return 0, err
			}
			if v > 1<<40 {
				return 0, r.corrupt("list sizes", r.off-8, "list %d of %d entries", l, v)
			}
			ff.sizes[l] = int64(v)
		}
	case "sprs":
		at := r.off
		n, err := r.count("sparse list sizes", 8)
		if err != nil {
			return 0, err
		}
		if n%2 != 0 {
			return 0, r.corrupt("sparse list sizes", at, "%d values, not (list, size) pairs", n)
		}
		for i := int64(0); i < n; i += 2 {
			l, err := r.u64("sparse list sizes")
			if err != nil {
				return 0, err
			}
			if l >= uint64(nlist) {
				return 0, r.corrupt("sparse list sizes", r.off-8, "list %d of %d", l, nlist)
			}
			v, err := r.u64("sparse list sizes")
			if err != nil {
				return 0, err
			}
			if v > 1<<40 {
				return 0, r.corrupt("sparse list sizes", r.off-8, "list %d of %d entries", l, v)
			}
			ff.sizes[l] = int64(v)
		}
	default:
		return 0, r.corrupt("list sizes type", at, "%q (want \"full\" or \"sprs\")", st)
	}
	// The lists follow: codes, then ids, of each non-empty list.
	off := r.off
	var total int64
	for l, n := range ff.sizes {
		if n > (r.size-off)/entry {
			return 0, r.corrupt(fmt.Sprintf("list %d", l), off, "%d entries of %d bytes, the file has %d bytes left", n, entry, r.size-off)
		}
		ff.codeOff[l] = off
		ff.idOff[l] = off + n*int64(cs)
		off += n * entry
		total += n
	}
	r.off = off
	return total, nil
}

// readOnDisk reads an OnDiskInvertedLists table and opens its data file.
func (ff *faissFile) readOnDisk(r *fReader, entry int64, name string, open func(string) (dataFile, error)) (int64, error) {
	nlist := int64(len(ff.sizes))
	at := r.off
	n, err := r.count("on-disk lists", 24)
	if err != nil {
		return 0, err
	}
	if n != nlist {
		return 0, r.corrupt("on-disk lists", at, "%d list entries for %d lists", n, nlist)
	}
	type odList struct{ size, capacity, offset uint64 }
	lists := make([]odList, nlist)
	for l := range lists {
		b, err := r.next("on-disk lists", 24)
		if err != nil {
			return 0, err
		}
		lists[l] = odList{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])}
	}
	listsAt := at + 8
	if n, err = r.count("on-disk free slots", 16); err != nil {
		return 0, err
	}
	if err := r.skip("on-disk free slots", 16*n); err != nil {
		return 0, err
	}
	at = r.off
	if n, err = r.count("on-disk file name", 1); err != nil {
		return 0, err
	}
	if n == 0 || n > 1<<16 {
		return 0, r.corrupt("on-disk file name", at, "name of %d bytes", n)
	}
	b, err := r.next("on-disk file name", n)
	if err != nil {
		return 0, err
	}
	fname := string(b)
	for _, c := range b {
		if c == 0 {
			return 0, r.corrupt("on-disk file name", at+8, "NUL byte in the name %q", fname)
		}
	}
	if _, err := r.u64("on-disk totsize"); err != nil {
		return 0, err
	}
	if r.off != r.size {
		// Checked here too, so that a damaged file is reported as such
		// before its data file is looked for.
		return 0, r.corrupt("end of index", r.off, "%d unexpected bytes after the inverted lists", r.size-r.off)
	}

	// The data file: the name stored, and next to the index file.
	tried := []string{fname}
	if alt := filepath.Join(filepath.Dir(name), filepath.Base(fname)); alt != fname {
		tried = append(tried, alt)
	}
	var df dataFile
	var firstErr error
	for _, p := range tried {
		f, err := open(p)
		if err == nil {
			df = f
			ff.info.DataFile = p
			break
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if df == nil {
		if errors.Is(firstErr, fs.ErrNotExist) {
			return 0, fmt.Errorf("ivf: FAISS file %s: its on-disk list data %q was not found (tried %q): %w", name, fname, tried, fs.ErrNotExist)
		}
		return 0, fmt.Errorf("ivf: FAISS file %s: open its on-disk list data %q (tried %q): %w", name, fname, tried, firstErr)
	}
	ff.closer, ff.data, ff.dname = df, df, ff.info.DataFile
	dsize := df.Size()
	var total int64
	cs := entry - 8
	for l, e := range lists {
		field := fmt.Sprintf("on-disk list %d", l)
		if e.size == 0 {
			continue
		}
		if e.size > e.capacity || e.capacity > uint64(dsize/entry) || e.offset > uint64(dsize-int64(e.capacity)*entry) {
			return 0, r.corrupt(field, listsAt+24*int64(l), "size %d, capacity %d, offset %d do not fit in the %d bytes of %s",
				e.size, e.capacity, e.offset, dsize, ff.info.DataFile)
		}
		ff.sizes[l] = int64(e.size)
		ff.codeOff[l] = int64(e.offset)
		ff.idOff[l] = int64(e.offset) + int64(e.capacity)*cs
		total += int64(e.size)
	}
	return total, nil
}

// newIndex makes the index of the parsed model, with no lists.
func (ff *faissFile) newIndex(opts *ImportOptions) (*Index, error) {
	p := ff.p
	if opts != nil && opts.Cosine {
		p.Metric = Cosine
	}
	ix := &Index{p: p, trained: true}
	ix.setCentroids(ff.cents)
	ix.pq = ff.q
	ix.finishModel()
	return ix, nil
}

// faissSource is the lists of a FAISS file as a store.Source: each list is
// read with positioned reads into buffers of its own, so concurrent calls
// are safe and the file is never held in memory.
type faissSource struct {
	ff *faissFile
	cs int

	mu  sync.Mutex
	ids idState // bounds of the ids read so far
}

func newFAISSSource(ff *faissFile) *faissSource {
	return &faissSource{ff: ff, cs: ff.p.CodeSize(), ids: emptyIDs()}
}

func (s *faissSource) NumLists() int { return len(s.ff.sizes) }
func (s *faissSource) CodeSize() int { return s.cs }

func (s *faissSource) ListLen(l int) (int, error) {
	if l < 0 || l >= len(s.ff.sizes) {
		return 0, fmt.Errorf("%w: list %d of %d", ErrInput, l, len(s.ff.sizes))
	}
	return int(s.ff.sizes[l]), nil
}

func (s *faissSource) ReadList(l int) ([]int64, []byte, error) {
	if l < 0 || l >= len(s.ff.sizes) {
		return nil, nil, fmt.Errorf("%w: list %d of %d", ErrInput, l, len(s.ff.sizes))
	}
	n := s.ff.sizes[l]
	if n == 0 {
		return nil, nil, nil
	}
	codes := make([]byte, n*int64(s.cs))
	raw := make([]byte, 8*n)
	read := func(b []byte, at int64, what string) error {
		if _, err := s.ff.data.ReadAt(b, at); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: FAISS file %s: %s of list %d at byte %d: file ends early (changed since it was opened?)", ErrCorrupt, s.ff.dname, what, l, at)
			}
			return fmt.Errorf("ivf: read FAISS file %s: %w", s.ff.dname, err)
		}
		return nil
	}
	if err := read(codes, s.ff.codeOff[l], "codes"); err != nil {
		return nil, nil, err
	}
	if err := read(raw, s.ff.idOff[l], "ids"); err != nil {
		return nil, nil, err
	}
	if s.ff.p.Flat {
		for i := 0; i < len(codes); i += 4 {
			v := math.Float32frombits(binary.LittleEndian.Uint32(codes[i:]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("%w: FAISS file %s: vector %d of list %d (at byte %d) has a NaN or infinite component",
					ErrCorrupt, s.ff.dname, i/s.cs, l, s.ff.codeOff[l]+int64(i))
			}
		}
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	lo, hi, err := checkIDs(ids)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: FAISS file %s, list %d: %v", ErrUnsupported, s.ff.dname, l, err)
	}
	s.mu.Lock()
	s.ids = s.ids.with(lo, hi)
	s.mu.Unlock()
	return ids, codes, nil
}

// idState is the imported index's id bookkeeping once every list was
// read: the next sequential id is max(ntotal, largest id + 1), as FAISS
// numbers adds from ntotal.
func (s *faissSource) idState() idState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.ids
	st.next = max(st.next, s.ff.info.NTotal)
	return st
}

func openFAISS(path string, opts *ImportOptions) (*faissFile, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	open := openRegular
	if opts != nil && opts.openData != nil {
		open = opts.openData
	}
	ff, err := parseFAISS(f, st.Size(), path, open)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return ff, f, nil
}

// InspectFAISS reads the header of a FAISS index file and the layout of
// its lists (not the lists), checking them against the file sizes.
func InspectFAISS(path string) (*FAISSInfo, error) {
	ff, f, err := openFAISS(path, nil)
	if err != nil {
		return nil, err
	}
	f.Close()
	ff.close()
	info := ff.info
	return &info, nil
}

// ReadFAISS reads a FAISS IndexIVFPQ or IndexIVFFlat file (as written by
// faiss.write_index; lists inline or in an OnDiskInvertedLists data file)
// into an in-memory index. For files larger than memory use ImportFAISS.
func ReadFAISS(path string) (*Index, error) { return ReadFAISSWith(path, nil) }

// ReadFAISSWith is ReadFAISS with options.
func ReadFAISSWith(path string, opts *ImportOptions) (*Index, error) {
	ff, f, err := openFAISS(path, opts)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer ff.close()
	return ff.toMemory(opts)
}

// readFAISSBytes parses a FAISS file held in memory (tests, fuzzing).
func readFAISSBytes(b []byte, name string, opts *ImportOptions) (*Index, error) {
	open := openRegular
	if opts != nil && opts.openData != nil {
		open = opts.openData
	}
	ff, err := parseFAISS(bytesReaderAt(b), int64(len(b)), name, open)
	if err != nil {
		return nil, err
	}
	defer ff.close()
	return ff.toMemory(opts)
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (ff *faissFile) toMemory(opts *ImportOptions) (*Index, error) {
	ix, err := ff.newIndex(opts)
	if err != nil {
		return nil, err
	}
	src := newFAISSSource(ff)
	ml := NewMemLists(ff.p.NList, ff.p.CodeSize())
	total := ff.info.NTotal
	var done int64
	for l := range ff.sizes {
		ids, codes, err := src.ReadList(l)
		if err != nil {
			return nil, err
		}
		ml.ids[l], ml.codes[l] = ids, codes
		if len(ids) > 0 && opts != nil && opts.Progress != nil {
			done += int64(len(ids))
			opts.Progress("import", done, total)
		}
	}
	ix.ids = src.idState()
	for k, v := range ix.ids.meta() {
		ml.meta[k] = v
	}
	ix.lists = ml
	return ix, nil
}

// ImportFAISS reads a FAISS IndexIVFPQ or IndexIVFFlat file (as written by
// faiss.write_index) into a new index directory dir, as ToDisk makes: the
// model, and the lists moved into the store with its two-pass merge,
// streamed from the FAISS file (or its OnDiskInvertedLists data file) with
// positioned reads, so the file never has to fit in memory.
//
// Supported: IndexIVFPQ (8-bit codes, by residual or not) and
// IndexIVFFlat, L2 or inner product, with an IndexFlatL2/IP coarse
// quantizer, lists inline ("ilar") or on disk ("ilod": the data file
// named in the index, or if it is not found there, the file of that name
// next to the index file). Other types are ErrUnsupported; a damaged file
// is ErrCorrupt naming the field and its byte offset. The next sequential
// id is max(ntotal, largest id + 1). dir must not hold an index; if the
// import fails, what it created is removed.
func ImportFAISS(path, dir string, opts *ImportOptions) (*Index, error) {
	if err := CheckNewDir(dir); err != nil {
		return nil, err
	}
	ff, f, err := openFAISS(path, opts)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer ff.close()
	ix, err := ff.newIndex(opts)
	if err != nil {
		return nil, err
	}
	if opts != nil && opts.Progress != nil {
		ix.opProgress = func(stage string, done, total int64) {
			if stage == "merge" {
				opts.Progress("import", done, total)
			}
		}
	}
	src := newFAISSSource(ff)
	st, err := createDir(dir, ix, []Source{src}, src.idState)
	ix.opProgress = nil
	if err != nil {
		return nil, fmt.Errorf("ivf: import %s: %w", path, err)
	}
	dl := &diskLists{s: st}
	ix.lists, ix.disk, ix.dir = dl, dl, dir
	ix.ids = src.idState()
	return ix, nil
}

// fWriter writes FAISS fields; the first error sticks.
type fWriter struct {
	w   *bufio.Writer
	n   int64
	err error
	b   [8]byte
}

func (w *fWriter) bytes(b []byte) {
	if w.err != nil {
		return
	}
	var n int
	n, w.err = w.w.Write(b)
	w.n += int64(n)
}

func (w *fWriter) u8(v byte) { w.bytes([]byte{v}) }

func (w *fWriter) i32(v int32) {
	binary.LittleEndian.PutUint32(w.b[:4], uint32(v))
	w.bytes(w.b[:4])
}

func (w *fWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(w.b[:], v)
	w.bytes(w.b[:])
}

func (w *fWriter) tag(s string) { w.bytes([]byte(s)) }

func (w *fWriter) floats(v []float32) {
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

func (w *fWriter) header(d int, ntotal int64, metric int32) {
	w.i32(int32(d))
	w.u64(uint64(ntotal))
	w.u64(1 << 20) // unused fields, as FAISS writes them
	w.u64(1 << 20)
	w.u8(1) // is_trained
	w.i32(metric)
}

// ids writes ids as int64 little endian through buf.
func (w *fWriter) ids(ids []int64, buf []byte) []byte {
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
	w    *fWriter
}

func newAtomic(path string) (*createAtomic, error) {
	f, err := os.OpenFile(path+".tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &createAtomic{path: path, f: f, w: &fWriter{w: bufio.NewWriterSize(f, 4<<20)}}, nil
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
		return fmt.Errorf("ivf: write %s: %w", c.path, err)
	}
	d, err := os.Open(filepath.Dir(c.path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFAISS writes the index as a FAISS index file that faiss.read_index
// (FAISS 1.7.3 and later) reads: IndexIVFPQ or IndexIVFFlat with an
// IndexFlatL2 / IndexFlatIP quantizer holding the centroids, nprobe 1,
// lists inline (ArrayInvertedLists) or, with opts.OnDiskData, in a
// separate OnDiskInvertedLists data file. The lists are streamed from a
// snapshot, one at a time; each file is written to path+".tmp", fsynced
// and renamed.
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
func (ix *Index) WriteFAISS(path string, opts *ExportOptions) error {
	if !ix.trained {
		return ErrNotTrained
	}
	var o ExportOptions
	if opts != nil {
		o = *opts
	}
	if o.OnDiskData != "" && filepath.Clean(o.OnDiskData) == filepath.Clean(path) {
		return fmt.Errorf("%w: the on-disk list data file and the index file are both %s", ErrParams, path)
	}
	p := ix.p
	if !p.Flat && p.Nbits != 8 {
		return fmt.Errorf("%w: PQ with %d-bit codes", ErrParams, p.Nbits)
	}
	snap, err := ix.lists.Snapshot()
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
	metric := int32(faissMetricL2)
	if p.Metric == InnerProduct || p.Metric == Cosine && o.CosineAsInnerProduct {
		metric = faissMetricIP
	}

	idx, err := newAtomic(path)
	if err != nil {
		return fmt.Errorf("ivf: write %s: %w", path, err)
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
	if p.Flat {
		w.tag("IwFl")
	} else {
		w.tag("IwPQ")
	}
	w.header(p.D, total, metric)
	w.u64(uint64(nlist))
	w.u64(1) // nprobe
	if metric == faissMetricL2 {
		w.tag("IxF2")
	} else {
		w.tag("IxFI")
	}
	w.header(p.D, int64(nlist), metric)
	w.floats(ix.centroids)
	w.u8(0) // no direct map
	w.u64(0)
	if !p.Flat {
		if p.ByResidual {
			w.u8(1)
		} else {
			w.u8(0)
		}
		w.u64(uint64(cs))
		w.u64(uint64(p.D))
		w.u64(uint64(ix.pq.M))
		w.u64(uint64(ix.pq.Nbits))
		w.floats(ix.pq.Centroids)
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
	writeLists := func(w *fWriter) error {
		for l := range sizes {
			if sizes[l] == 0 {
				continue
			}
			ids, codes, err := snap.ReadList(l)
			if err != nil {
				return err
			}
			if int64(len(ids)) != sizes[l] || len(codes) != len(ids)*cs {
				return fmt.Errorf("%w: list %d changed during the export", ErrCorrupt, l)
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
			return fmt.Errorf("ivf: write %s: %w", o.OnDiskData, err)
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
