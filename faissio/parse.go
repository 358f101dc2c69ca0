package faissio

import (
	"errors"
	"fmt"
	"io"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/ivf"
	"github.com/shelfdb/shelf/pq"
	"github.com/shelfdb/shelf/rq"
)

// ErrUnsupported marks a FAISS file of a kind Shelf does not read: another
// index type, quantizer, metric or list storage.
var ErrUnsupported = errors.New("faissio: unsupported FAISS index")

// FAISS metric codes.
const (
	metricIP = 0
	metricL2 = 1
)

// Info describes a FAISS index file.
type Info struct {
	// Type is the FAISS class: "IndexIVFPQ", "IndexIVFFlat" or
	// "IndexIVFResidualQuantizer".
	Type string
	// FourCC is the file's type tag ("IwPQ", "IwFl", "IwRQ", or a legacy
	// one).
	FourCC string
	// Quantizer is the coarse quantizer's class: "IndexFlatL2",
	// "IndexFlatIP" or "IndexFlat".
	Quantizer string
	D, NList  int
	// M and Nbits describe the PQ, or the RQ's layers (0 for IVF-Flat).
	M, Nbits int
	// SearchType is the FAISS search type of an IndexIVFResidualQuantizer
	// ("ST_norm_cqint8", "ST_decompress", ...): how its codes store the
	// norm. Import takes ST_norm_cqint8 codes as they are and re-encodes
	// the norm of the others (see Import).
	SearchType string
	// Metric is ivf.L2 or ivf.InnerProduct.
	Metric     ivf.Metric
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

// typeNames names the FAISS classes behind fourccs, for errors.
var typeNames = map[string]string{
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

// typeName names a fourcc and, if known, its FAISS class.
func typeName(tag string) string {
	if n, ok := typeNames[tag]; ok {
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

// indexHeader is FAISS's Index header.
type indexHeader struct {
	d       int
	ntotal  int64
	trained bool
	metric  int32
}

func (r *reader) header(what string) (indexHeader, error) {
	var h indexHeader
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
	if h.metric > metricL2 {
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

// indexFile is a parsed FAISS IVF index file: the model in memory, the
// lists as offsets into the file holding them.
type indexFile struct {
	info    Info
	p       ivf.Params
	cents   []float32
	q       *pq.PQ
	rq      *rq.RQ
	rqc     *rqCodes // how an RQ file's codes become Shelf's
	fileCS  int      // the bytes of a code in the file
	sizes   []int64
	codeOff []int64
	idOff   []int64
	name    string      // the index file
	data    io.ReaderAt // the file holding the lists
	dname   string
	closer  io.Closer // the separate data file, if any
}

func (f *indexFile) close() {
	if f.closer != nil {
		f.closer.Close()
		f.closer = nil
	}
}

// parse reads the model and the layout of the lists of a FAISS file
// of size bytes named name; an "ilod" data file is opened with open.
func parse(ra io.ReaderAt, size int64, name string, open func(string) (dataFile, error)) (*indexFile, error) {
	r := &reader{r: ra, size: size, name: name}
	ff := &indexFile{name: name, data: ra, dname: name}
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
	case "IwRQ":
		info.Type = "IndexIVFResidualQuantizer"
	default:
		if !printableTag(top) {
			return nil, r.corrupt("index type", 0, "%q is not a FAISS index type: not a FAISS index file", top)
		}
		return nil, r.unsupported("index type %s is not supported; Shelf reads IndexIVFPQ (\"IwPQ\"), IndexIVFFlat (\"IwFl\") and IndexIVFResidualQuantizer (\"IwRQ\")", typeName(top))
	}
	legacy := top[1] == 'v'
	flat := info.Type == "IndexIVFFlat"
	isRQ := top == "IwRQ"
	h, err := r.header("index header")
	if err != nil {
		return nil, err
	}
	if !h.trained {
		return nil, fmt.Errorf("%w: FAISS file %s: the index is not trained", ivf.ErrNotTrained, name)
	}
	info.D, info.NTotal = h.d, h.ntotal
	info.Metric = ivf.L2
	if h.metric == metricIP {
		info.Metric = ivf.InnerProduct
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
		return nil, r.unsupported("quantizer %s is not supported; Shelf reads IndexFlatL2/IP quantizers", typeName(qt))
	}
	info.Quantizer = typeNames[qt]
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
	if qh.metric != h.metric && !vecmath.UnitRows(ff.cents, h.d) {
		return nil, r.unsupported("the quantizer (%s) and the index use different metrics; Shelf probes lists with the index's metric", typeName(qt))
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
	if isRQ {
		if err := ff.parseRQ(r, h.d); err != nil {
			return nil, err
		}
		cs = ff.fileCS
	} else if !flat {
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
	ff.fileCS = cs
	ff.p = ivf.Params{D: h.d, NList: int(nlist), M: info.M, Nbits: info.Nbits, Flat: flat, RQ: isRQ, Metric: info.Metric, ByResidual: info.ByResidual}
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
