package tools

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shelfdb/shelf/faissio"
	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("import-faiss", "read a FAISS IndexIVFPQ / IndexIVFFlat / IndexIVFResidualQuantizer file into a new on-disk index", runImportFAISS)
	register("export-faiss", "write an index as a FAISS index file: IVF,PQ / IVF,Flat / IVF,RQ (as RQ<M>x8_Ncqint8); lists inline or OnDiskInvertedLists", runExportFAISS)
}

// faissModel describes a FAISS index in one line.
func faissModel(info *faissio.Info) string {
	s := fmt.Sprintf("%s (%q), d=%d, nlist=%d", info.Type, info.FourCC, info.D, info.NList)
	if info.M > 0 {
		s += fmt.Sprintf(", M=%d (%d-bit codes)", info.M, info.Nbits)
		switch info.SearchType {
		case "":
		case "ST_norm_cqint8":
			s += ", norms " + info.SearchType
		default:
			s += ", norms " + info.SearchType + " (re-encoded as 8-bit norm levels)"
		}
		if info.ByResidual {
			s += ", by residual"
		} else {
			s += ", not by residual"
		}
	}
	metric := "l2"
	if info.Metric == ivf.InnerProduct {
		metric = "inner product"
	}
	return s + ", metric " + metric
}

func runImportFAISS(env *Env) error {
	fs := newFlags(env, "import-faiss", "import-faiss --faiss FILE --index DIR [--cosine] [--quiet]",
		"shelf import-faiss --faiss sift.index --index /data/sift\n"+
			"shelf import-faiss --faiss populated.index --index /data/big   # ilod: its .ivfdata is found where the index says, or next to it")
	in := fs.String("faiss", "", "FAISS index file (faiss.write_index of an IndexIVFPQ, IndexIVFFlat or IndexIVFResidualQuantizer with 8-bit layers; RQ norms other than _Ncqint8 are re-encoded as 8-bit levels)")
	dir := fs.String("index", "", "index directory to create (must not exist or be empty)")
	cosine := fs.Bool("cosine", false, "the index holds L2-normalized vectors: import it as a cosine index (Shelf normalizes queries and adds)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *in == "" || *dir == "" {
		return fmt.Errorf("%w: --faiss and --index are required", errUsage)
	}
	if err := checkNewIndexDir(*dir); err != nil {
		return err
	}
	info, err := faissio.Inspect(*in)
	if err != nil {
		return err
	}
	report, finish := stageBar(env, *quiet, "vectors")
	t0 := time.Now()
	ix, err := faissio.Import(*in, *dir, &faissio.ImportOptions{Progress: report, Cosine: *cosine})
	finish()
	if err != nil {
		return err
	}
	next := ix.NextID()
	if err := ix.Close(); err != nil {
		return err
	}
	el := time.Since(t0).Seconds()
	size, _ := buildDirSize(*dir)
	out := env.Stdout
	fmt.Fprintf(out, "imported %s into %s\n", *in, *dir)
	fmt.Fprintf(out, "  model     %s, quantizer %s\n", faissModel(info), info.Quantizer)
	if *cosine {
		fmt.Fprintf(out, "  metric    imported as cosine\n")
	}
	switch info.Lists {
	case "ilod":
		fmt.Fprintf(out, "  lists     OnDiskInvertedLists data %s\n", info.DataFile)
	case "ilar":
		fmt.Fprintf(out, "  lists     inline (ArrayInvertedLists)\n")
	default:
		fmt.Fprintf(out, "  lists     inline (%s format)\n", info.Lists)
	}
	fmt.Fprintf(out, "  vectors   %d (next sequential id %d)\n", info.NTotal, next)
	fmt.Fprintf(out, "  time      %.2f s (%.0f vectors/s, %.1f MB/s of lists)\n", el, float64(info.NTotal)/max(el, 1e-9), float64(info.ListBytes)/1e6/max(el, 1e-9))
	fmt.Fprintf(out, "  on disk   %s (%d bytes)\n", buildHuman(size), size)
	return nil
}

func runExportFAISS(env *Env) error {
	fs := newFlags(env, "export-faiss", "export-faiss --index DIR --faiss FILE [--ondisk DATAFILE] [--cosine-as-ip] [--quiet]",
		"shelf export-faiss --index /data/sift --faiss sift.index\n"+
			"shelf export-faiss --index /data/big --faiss /data/big.index --ondisk /data/big.ivfdata   # FAISS mmaps the lists")
	dir := fs.String("index", "", "index directory (opened read-only: a writer may be running)")
	out := fs.String("faiss", "", "FAISS index file to write (atomically: FILE.tmp, then renamed)")
	ondisk := fs.String("ondisk", "", "write the lists to this file as FAISS's OnDiskInvertedLists data; the index file stores the name as given, so give an absolute path unless FAISS runs in that directory")
	asIP := fs.Bool("cosine-as-ip", false, "a cosine index is exported as METRIC_INNER_PRODUCT (scores with decoded vectors: a worse ranking for PQ) instead of METRIC_L2 (FAISS then ranks exactly as Shelf, distance d = 2 - 2 cos)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *dir == "" || *out == "" {
		return fmt.Errorf("%w: --index and --faiss are required", errUsage)
	}
	if *ondisk != "" {
		if a, err := filepath.Abs(*ondisk); err == nil {
			if b, err := filepath.Abs(*out); err == nil && a == b {
				return fmt.Errorf("%w: --ondisk and --faiss name the same file", errUsage)
			}
		}
	}
	ix, err := ivf.OpenReadOnly(*dir)
	if err != nil {
		return err
	}
	defer ix.Close()
	p := ix.Params()
	report, finish := stageBar(env, *quiet, "vectors")
	t0 := time.Now()
	err = faissio.Write(ix, *out, &faissio.ExportOptions{OnDiskData: *ondisk, CosineAsInnerProduct: *asIP, Progress: report})
	finish()
	if err != nil {
		return err
	}
	el := time.Since(t0).Seconds()
	info, err := faissio.Inspect(*out)
	if err != nil {
		return fmt.Errorf("the exported file does not read back: %w", err)
	}
	w := env.Stdout
	fmt.Fprintf(w, "exported %s to %s\n", *dir, *out)
	fmt.Fprintf(w, "  model     %s\n", faissModel(info))
	if p.Metric == ivf.Cosine {
		if !*asIP {
			fmt.Fprintf(w, "  note      cosine exported as METRIC_L2: normalize queries in FAISS; cosine = 1 - d/2\n")
		} else {
			fmt.Fprintf(w, "  note      cosine exported as METRIC_INNER_PRODUCT: normalize queries in FAISS\n")
		}
	}
	st, _ := os.Stat(*out)
	if *ondisk != "" {
		dst, _ := os.Stat(*ondisk)
		fmt.Fprintf(w, "  lists     OnDiskInvertedLists data %s (%s)\n", *ondisk, buildHuman(dst.Size()))
	} else {
		fmt.Fprintf(w, "  lists     inline (ArrayInvertedLists)\n")
	}
	fmt.Fprintf(w, "  vectors   %d\n", info.NTotal)
	fmt.Fprintf(w, "  time      %.2f s (%.0f vectors/s, %.1f MB/s of lists)\n", el, float64(info.NTotal)/max(el, 1e-9), float64(info.ListBytes)/1e6/max(el, 1e-9))
	fmt.Fprintf(w, "  size      %s (%d bytes)\n", buildHuman(st.Size()), st.Size())
	return nil
}
