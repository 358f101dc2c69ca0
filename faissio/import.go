package faissio

import (
	"fmt"
	"os"

	"github.com/shelfdb/shelf/ivf"
)

// ImportOptions tune Import and ReadWith.
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

// openFile opens and parses the FAISS file at path; the caller closes both.
func openFile(path string, opts *ImportOptions) (*indexFile, *os.File, error) {
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
	ff, err := parse(f, st.Size(), path, open)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return ff, f, nil
}

// Inspect reads the header of a FAISS index file and the layout of
// its lists (not the lists), checking them against the file sizes.
func Inspect(path string) (*Info, error) {
	ff, f, err := openFile(path, nil)
	if err != nil {
		return nil, err
	}
	f.Close()
	ff.close()
	info := ff.info
	return &info, nil
}

// Read reads a FAISS IndexIVFPQ, IndexIVFFlat or IndexIVFResidualQuantizer
// file (as written by
// faiss.write_index; lists inline or in an OnDiskInvertedLists data file)
// into an in-memory index. For files larger than memory use Import.
func Read(path string) (*ivf.Index, error) { return ReadWith(path, nil) }

// ReadWith is Read with options.
func ReadWith(path string, opts *ImportOptions) (*ivf.Index, error) {
	ff, f, err := openFile(path, opts)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer ff.close()
	return ff.create("", opts)
}

// readBytes parses a FAISS file held in memory (tests, fuzzing).
func readBytes(b []byte, name string, opts *ImportOptions) (*ivf.Index, error) {
	open := openRegular
	if opts != nil && opts.openData != nil {
		open = opts.openData
	}
	ff, err := parse(bytesReaderAt(b), int64(len(b)), name, open)
	if err != nil {
		return nil, err
	}
	defer ff.close()
	return ff.create("", opts)
}

// create makes the index of the parsed file: in memory if dir is "",
// else as the new index directory dir. FAISS numbers adds from ntotal, so
// the next sequential id is max(ntotal, largest id + 1).
func (ff *indexFile) create(dir string, opts *ImportOptions) (*ivf.Index, error) {
	p := ff.p
	if opts != nil && opts.Cosine {
		p.Metric = ivf.Cosine
	}
	src := newListSource(ff)
	var model *ivf.Index
	var err error
	if ff.rq != nil {
		if ff.rqc.derive && !ff.rq.Trained() {
			// Norm levels for the norms Shelf re-encodes; the quantizer
			// is the file's, not shared: set them once.
			lv, err := src.rqNormLevels()
			if err != nil {
				return nil, err
			}
			ff.rq.NormLevels = lv
		}
		model, err = ivf.NewTrainedRQ(p, ff.cents, ff.rq)
	} else {
		model, err = ivf.NewTrained(p, ff.cents, ff.q)
	}
	if err != nil {
		return nil, err
	}
	var progress func(done, total int64)
	if opts != nil && opts.Progress != nil {
		progress = func(done, total int64) { opts.Progress("import", done, total) }
	}
	return ivf.CreateFrom(model, src, dir, ff.info.NTotal, progress)
}

// Import reads a FAISS IndexIVFPQ, IndexIVFFlat or
// IndexIVFResidualQuantizer file (as written by faiss.write_index) into a new index directory dir, made by
// ivf.CreateFrom as ToDisk makes one: the lists go into the store with
// its two-pass merge, streamed from the FAISS file (or its
// OnDiskInvertedLists data file) with positioned reads, so the file never
// has to fit in memory, and the model is written last.
//
// Supported: IndexIVFPQ (8-bit codes, by residual or not),
// IndexIVFFlat, and IndexIVFResidualQuantizer of 8-bit layers (by residual
// or not; its codes taken as they are for ST_norm_cqint8, FAISS's
// IVF<n>,RQ<M>x8_Ncqint8; for the other search types, FAISS's default
// ST_decompress included, the norm byte is re-encoded from the decoded
// layers against 256 levels trained on up to 65,536 codes, and searches
// then score with these 8-bit norms), L2 or inner product, with an IndexFlatL2/IP coarse
// quantizer, lists inline ("ilar") or on disk ("ilod": the data file
// named in the index, or if it is not found there, the file of that name
// next to the index file). Other types, and the id -1 (FAISS's empty
// result slot), are ErrUnsupported; a damaged file is ivf.ErrCorrupt
// naming the field and its byte offset. The next sequential id is
// max(ntotal, largest id + 1). dir must not hold an index; if the import
// fails, what it created is removed.
func Import(path, dir string, opts *ImportOptions) (*ivf.Index, error) {
	if err := ivf.CheckNewDir(dir); err != nil {
		return nil, err
	}
	ff, f, err := openFile(path, opts)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer ff.close()
	ix, err := ff.create(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("faissio: import %s: %w", path, err)
	}
	return ix, nil
}
