package faissio

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/faisstest"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// faissTask is one task of bench/faiss_io.py (faisstest.RunIO).
type faissTask = map[string]any

// readFAISSResults reads the distances and ids a search task wrote.
func readFAISSResults(t *testing.T, dist, labels string) ([]float32, []int64) {
	t.Helper()
	m, err := vecio.ReadFloat32(dist)
	if err != nil {
		t.Fatal(err)
	}
	_, _, ids, err := vecio.ReadInt64(labels)
	if err != nil {
		t.Fatal(err)
	}
	return m.Data, ids
}

// compareResults checks Shelf's k-NN results against FAISS's (both of
// kk >= k columns): distances within 1e-4 relative at every rank up to k,
// and the same ids, except that ids whose distances are tied (equal up to
// float rounding) may come in any order: the ids of every group of tied
// results that starts before rank k and ends before kk must be the same
// sets.
func compareResults(t *testing.T, what string, nq, kk, k int, sD []float32, sI []int64, fD []float32, fI []int64) {
	t.Helper()
	close := func(a, b float32, tol float64) bool {
		return math.Abs(float64(a)-float64(b)) <= tol*max(1, math.Abs(float64(a)), math.Abs(float64(b)))
	}
	bad := 0
	for q := 0; q < nq && bad < 5; q++ {
		sd, si := sD[q*kk:(q+1)*kk], sI[q*kk:(q+1)*kk]
		fd, fi := fD[q*kk:(q+1)*kk], fI[q*kk:(q+1)*kk]
		for j := 0; j < k; j++ {
			if si[j] == -1 || fi[j] == -1 {
				if si[j] != fi[j] {
					t.Errorf("%s: query %d rank %d: Shelf id %d, FAISS id %d", what, q, j, si[j], fi[j])
					bad++
				}
				continue
			}
			if !close(sd[j], fd[j], 1e-4) {
				t.Errorf("%s: query %d rank %d: Shelf distance %g, FAISS %g", what, q, j, sd[j], fd[j])
				bad++
			}
		}
		for j := 0; j < k; {
			e := j + 1
			for e < kk && si[e] != -1 && close(sd[e], sd[e-1], 2e-6) {
				e++
			}
			if e < kk || si[kk-1] == -1 {
				a, b := slices.Clone(si[j:e]), slices.Clone(fi[j:e])
				slices.Sort(a)
				slices.Sort(b)
				if !slices.Equal(a, b) {
					t.Errorf("%s: query %d ranks %d..%d: Shelf ids %v (distances %v), FAISS ids %v (distances %v)",
						what, q, j, e-1, si[j:e], sd[j:e], fi[j:e], fd[j:e])
					bad++
				}
			}
			j = e
		}
	}
}

// faissTestData is the seeded data set of these tests, written as files
// bench/faiss_io.py reads: base, queries and non-sequential ids.
type faissTestData struct {
	base, queries vecio.Matrix
	ids           []int64
	baseF, qF     string
	idsF          string
}

func newFAISSTestData(t *testing.T, dir string, n, d, nq int) faissTestData {
	t.Helper()
	td := faissTestData{base: synth.Clustered(n, d, 40, 11), queries: synth.Queries(nq, d, 40, 11)}
	td.ids = make([]int64, n)
	for i := range td.ids {
		td.ids[i] = 1_000_003 + 13*int64(i) - int64(i%7)*3
	}
	td.baseF, td.qF, td.idsF = filepath.Join(dir, "base.fvecs"), filepath.Join(dir, "q.fvecs"), filepath.Join(dir, "ids.npy")
	if err := vecio.WriteFvecs(td.baseF, td.base); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteFvecs(td.qF, td.queries); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteNpyInt64(td.idsF, td.ids); err != nil {
		t.Fatal(err)
	}
	return td
}

// isParseError reports whether err wraps one of the parser's sentinels.
func isParseError(err error) bool {
	return errors.Is(err, ivf.ErrCorrupt) || errors.Is(err, ErrUnsupported)
}

// TestImportFAISS has FAISS build IVF-PQ and IVF-Flat indexes (L2 and
// inner product, by residual or not, lists inline with both list-size
// encodings and on disk) with non-sequential ids, and requires Shelf's
// imports (in memory and into an index directory) to return FAISS's ids
// and distances for the same queries.
func TestImportFAISS(t *testing.T) {
	faisstest.Require(t)
	dir := t.TempDir()
	const n, d, nq, k, kk = 5000, 32, 40, 10, 20
	td := newFAISSTestData(t, dir, n, d, nq)
	type tcase struct {
		name, factory, metric string
		byResidual            bool
		ondisk                string
		addN                  int
		nlist                 int
	}
	cases := []tcase{
		{name: "pq-l2", factory: "IVF64,PQ8", metric: "l2", byResidual: true, nlist: 64},
		{name: "pq-ip", factory: "IVF32,PQ8", metric: "ip", byResidual: true, nlist: 32},
		{name: "pq-l2-direct", factory: "IVF32,PQ8", metric: "l2", nlist: 32},
		{name: "flat-l2", factory: "IVF32,Flat", metric: "l2", nlist: 32},
		{name: "flat-ip", factory: "IVF32,Flat", metric: "ip", nlist: 32},
		{name: "pq-ondisk", factory: "IVF64,PQ8", metric: "l2", byResidual: true, ondisk: "pq-ondisk.ivfdata", nlist: 64},
		{name: "flat-ondisk-ip", factory: "IVF32,Flat", metric: "ip", ondisk: "flat-ondisk.ivfdata", nlist: 32},
		// 12 vectors in 64 lists: FAISS writes the sparse list sizes.
		{name: "pq-sparse", factory: "IVF64,PQ8", metric: "l2", byResidual: true, addN: 12, nlist: 64},
	}
	var tasks []faissTask
	for _, c := range cases {
		b := faissTask{"op": "build", "base": td.baseF, "ids": td.idsF, "factory": c.factory, "metric": c.metric,
			"by_residual": c.byResidual, "out": c.name + ".index"}
		if c.ondisk != "" {
			b["ondisk"] = c.ondisk // relative: found next to the index
		}
		if c.addN > 0 {
			b["add_n"] = c.addN
		}
		tasks = append(tasks, b)
		for _, np := range []int{4, c.nlist} {
			tasks = append(tasks, faissTask{"op": "search", "index": c.name + ".index", "queries": td.qF, "k": kk, "nprobe": np,
				"dist": fmt.Sprintf("%s-%d-d.npy", c.name, np), "labels": fmt.Sprintf("%s-%d-i.npy", c.name, np)})
		}
	}
	// Types Shelf refuses.
	unsupported := map[string]string{"sq": "IVF16,SQ8", "pca": "PCA16,IVF16,Flat", "hnsw": "IVF16_HNSW8,Flat", "pq4": "IVF16,PQ8x4", "idmap": "IDMap,Flat"}
	for name, f := range unsupported {
		tasks = append(tasks, faissTask{"op": "build", "base": td.baseF, "factory": f, "metric": "l2", "out": "unsup-" + name + ".index"})
	}
	faisstest.RunIO(t, dir, tasks...)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".index")
			info, err := Inspect(path)
			if err != nil {
				t.Fatal(err)
			}
			wantN := int64(n)
			if c.addN > 0 {
				wantN = int64(c.addN)
			}
			if info.D != d || info.NList != c.nlist || info.NTotal != wantN || (info.Metric == ivf.InnerProduct) != (c.metric == "ip") {
				t.Fatalf("Inspect: %+v", info)
			}
			if (c.ondisk != "") != (info.Lists == "ilod") || (c.ondisk != "" && filepath.Base(info.DataFile) != c.ondisk) {
				t.Fatalf("Inspect lists %q, data file %q", info.Lists, info.DataFile)
			}
			mem, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			var stages []string
			disk, err := Import(path, filepath.Join(dir, c.name+"-shelf"), &ImportOptions{Progress: func(s string, done, total int64) {
				if done > total || total != wantN {
					t.Errorf("progress %s %d of %d", s, done, total)
				}
				stages = append(stages, s)
			}})
			if err != nil {
				t.Fatal(err)
			}
			if len(stages) == 0 || stages[0] != "import" {
				t.Errorf("import progress stages %v", stages)
			}
			if err := mem.SameTraining(disk); err != nil {
				t.Fatal(err)
			}
			p := mem.Params()
			if p.Flat != strings.HasSuffix(c.factory, "Flat") || p.NList != c.nlist || (!p.Flat && (p.M != 8 || p.ByResidual != c.byResidual)) {
				t.Fatalf("params %+v", p)
			}
			// The next sequential id is max(ntotal, largest id + 1).
			wantNext := td.ids[wantN-1] + 1
			for _, ix := range []*ivf.Index{mem, disk} {
				if ix.NextID() != wantNext || ix.NTotal() != wantN {
					t.Fatalf("next id %d, ntotal %d; want %d, %d", ix.NextID(), ix.NTotal(), wantNext, wantN)
				}
			}
			disk.Close()
			disk, err = ivf.Open(filepath.Join(dir, c.name+"-shelf"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer disk.Close()
			if disk.NextID() != wantNext {
				t.Fatalf("reopened: next id %d, want %d", disk.NextID(), wantNext)
			}
			for _, np := range []int{4, c.nlist} {
				fD, fI := readFAISSResults(t, filepath.Join(dir, fmt.Sprintf("%s-%d-d.npy", c.name, np)), filepath.Join(dir, fmt.Sprintf("%s-%d-i.npy", c.name, np)))
				for name, ix := range map[string]*ivf.Index{"Read": mem, "Import": disk} {
					sD, sI, err := ix.Search(td.queries.Data, nq, kk, np)
					if err != nil {
						t.Fatal(err)
					}
					compareResults(t, fmt.Sprintf("%s nprobe %d", name, np), nq, kk, k, sD, sI, fD, fI)
				}
			}
		})
	}

	t.Run("refusals", func(t *testing.T) {
		// An existing index directory is refused, and left alone.
		_, err := Import(filepath.Join(dir, "pq-l2.index"), filepath.Join(dir, "pq-l2-shelf"), nil)
		if !errors.Is(err, ivf.ErrExists) || !strings.Contains(err.Error(), "already holds an index") {
			t.Fatalf("import into an index: %v", err)
		}
		if ix, err := ivf.Open(filepath.Join(dir, "pq-l2-shelf"), nil); err != nil {
			t.Fatalf("the refused import damaged the index: %v", err)
		} else {
			ix.Close()
		}
		// An on-disk index whose data file is nowhere: both paths named.
		lone := filepath.Join(t.TempDir(), "lone.index")
		raw, _ := os.ReadFile(filepath.Join(dir, "pq-ondisk.index"))
		os.WriteFile(lone, raw, 0o644)
		_, err = Read(lone)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "pq-ondisk.ivfdata") || !strings.Contains(err.Error(), filepath.Join(filepath.Dir(lone), "pq-ondisk.ivfdata")) {
			t.Fatalf("missing data file: %v", err)
		}
		target := filepath.Join(t.TempDir(), "x")
		if _, err := Import(lone, target, nil); err == nil {
			t.Fatal("import without its data file succeeded")
		}
		if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a failed import left %s behind: %v", target, err)
		}
		// Other FAISS types: a clear error naming the type.
		want := map[string]string{"sq": `"IwSq" (IndexIVFScalarQuantizer)`, "pca": `"IxPT" (IndexPreTransform)`,
			"hnsw": `quantizer "IHNf" (IndexHNSWFlat)`, "pq4": "nbits = 4", "idmap": `"IxMp" (IndexIDMap)`}
		for name, msg := range want {
			_, err := Read(filepath.Join(dir, "unsup-"+name+".index"))
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), msg) {
				t.Errorf("%s: %v (want ErrUnsupported naming %s)", name, err, msg)
			}
		}
	})
}

// shelfTestIndex trains a Shelf index on the test data and adds it: the
// first half with the data's ids, the rest with sequential ids.
func shelfTestIndex(t *testing.T, factory string, metric ivf.Metric, byResidual bool, td faissTestData) *ivf.Index {
	t.Helper()
	p, err := ivf.ParseFactory(factory, td.base.D, metric)
	if err != nil {
		t.Fatal(err)
	}
	p.ByResidual = byResidual
	ix, err := ivf.New(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(td.base.Data, td.base.N, &ivf.TrainOptions{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	d, half := td.base.D, td.base.N/2
	if err := ix.AddWithIDs(td.base.Data[:half*d], half, td.ids[:half]); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(td.base.Data[half*d:], td.base.N-half); err != nil {
		t.Fatal(err)
	}
	return ix
}

// TestExportFAISS has Shelf train and fill indexes of every kind, exports
// them (lists inline and on disk; from memory and from an index
// directory), and requires FAISS to read them and return Shelf's ids and
// distances.
func TestExportFAISS(t *testing.T) {
	faisstest.Require(t)
	dir := t.TempDir()
	const n, d, nq, k, kk = 4000, 32, 40, 10, 20
	td := newFAISSTestData(t, dir, n, d, nq)
	// FAISS users normalize their queries for an exported cosine index.
	qn := vecio.Matrix{N: nq, D: d, Data: slices.Clone(td.queries.Data)}
	for i := 0; i < nq; i++ {
		v := qn.Row(i)
		var s float64
		for _, x := range v {
			s += float64(x) * float64(x)
		}
		for j := range v {
			v[j] /= float32(math.Sqrt(s))
		}
	}
	qnF := filepath.Join(dir, "qn.fvecs")
	if err := vecio.WriteFvecs(qnF, qn); err != nil {
		t.Fatal(err)
	}
	type tcase struct {
		name, factory string
		metric        ivf.Metric
		byResidual    bool
		toDisk        bool
		cosineAsL2    bool
	}
	cases := []tcase{
		{"pq-l2", "IVF32,PQ8", ivf.L2, true, false, false},
		{"pq-ip", "IVF32,PQ8", ivf.InnerProduct, true, false, false},
		{"pq-l2-direct", "IVF32,PQ8", ivf.L2, false, false, false},
		{"pq-cos", "IVF32,PQ8", ivf.Cosine, true, false, false},
		{"pq-cos-as-l2", "IVF32,PQ8", ivf.Cosine, true, false, true},
		{"flat-l2", "IVF32,Flat", ivf.L2, true, false, false},
		{"flat-ip", "IVF32,Flat", ivf.InnerProduct, true, false, false},
		{"flat-cos", "IVF32,Flat", ivf.Cosine, true, false, false},
		{"pq-l2-disk", "IVF32,PQ8", ivf.L2, true, true, false},
	}
	indexes := map[string]*ivf.Index{}
	var tasks []faissTask
	for _, c := range cases {
		ix := shelfTestIndex(t, c.factory, c.metric, c.byResidual, td)
		if c.toDisk {
			if err := ix.ToDisk(filepath.Join(dir, c.name+"-shelf")); err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
		}
		indexes[c.name] = ix
		q := td.qF
		if c.metric == ivf.Cosine {
			q = qnF
		}
		for _, ondisk := range []bool{false, true} {
			name := c.name
			var opts *ExportOptions
			if ondisk {
				name += "-od"
				opts = &ExportOptions{OnDiskData: filepath.Join(dir, name+".ivfdata")}
			}
			var last int64
			if opts == nil {
				opts = &ExportOptions{}
			}
			opts.CosineAsInnerProduct = c.metric == ivf.Cosine && !c.cosineAsL2
			opts.Progress = func(stage string, done, total int64) {
				if stage != "export" || done < last || done > total || total != n {
					t.Errorf("export progress %s %d of %d", stage, done, total)
				}
				last = done
			}
			if err := Write(ix, filepath.Join(dir, name+".index"), opts); err != nil {
				t.Fatal(err)
			}
			if last != n {
				t.Errorf("export progress ended at %d of %d", last, n)
			}
			tasks = append(tasks, faissTask{"op": "info", "index": name + ".index", "out": name + ".json"},
				faissTask{"op": "rewrite", "index": name + ".index", "out": name + "-rewritten.index"})
			for _, np := range []int{4, 32} {
				tasks = append(tasks, faissTask{"op": "search", "index": name + ".index", "queries": q, "k": kk, "nprobe": np,
					"dist": fmt.Sprintf("%s-%d-d.npy", name, np), "labels": fmt.Sprintf("%s-%d-i.npy", name, np)})
			}
		}
	}
	faisstest.RunIO(t, dir, tasks...)

	for _, c := range cases {
		ix := indexes[c.name]
		for _, ondisk := range []bool{false, true} {
			name := c.name
			if ondisk {
				name += "-od"
			}
			t.Run(name, func(t *testing.T) {
				var info struct {
					Type     string `json:"type"`
					D        int    `json:"d"`
					NList    int    `json:"nlist"`
					NTotal   int64  `json:"ntotal"`
					Metric   string `json:"metric"`
					CodeSize int    `json:"code_size"`
					Trained  bool   `json:"is_trained"`
					QNTotal  int    `json:"quantizer_ntotal"`
					QMetric  string `json:"quantizer_metric"`
				}
				raw, err := os.ReadFile(filepath.Join(dir, name+".json"))
				if err != nil {
					t.Fatal(err)
				}
				json.Unmarshal(raw, &info)
				wantType, wantMetric := "IndexIVFPQ", "ip"
				if ix.Params().Flat {
					wantType = "IndexIVFFlat"
				}
				if c.metric == ivf.L2 || c.cosineAsL2 {
					wantMetric = "l2"
				}
				if info.Type != wantType || info.D != d || info.NList != 32 || info.NTotal != n || info.Metric != wantMetric ||
					info.CodeSize != ix.Params().CodeSize() || !info.Trained || info.QNTotal != 32 || info.QMetric != wantMetric {
					t.Fatalf("FAISS read %+v", info)
				}
				// FAISS writes what it read back byte for byte (inline, every
				// list is non-empty, so it too writes the "full" list sizes;
				// on disk, the same list table).
				ours, _ := os.ReadFile(filepath.Join(dir, name+".index"))
				theirs, _ := os.ReadFile(filepath.Join(dir, name+"-rewritten.index"))
				if !bytes.Equal(ours, theirs) {
					t.Errorf("FAISS's write_index of the export differs from it (%d vs %d bytes)", len(theirs), len(ours))
				}
				fi, err := Inspect(filepath.Join(dir, name+".index"))
				if err != nil {
					t.Fatal(err)
				}
				if wantQ := map[string]string{"l2": "IndexFlatL2", "ip": "IndexFlatIP"}[wantMetric]; fi.Quantizer != wantQ || fi.NTotal != n {
					t.Fatalf("Inspect: %+v", fi)
				}
				for _, np := range []int{4, 32} {
					fD, fI := readFAISSResults(t, filepath.Join(dir, fmt.Sprintf("%s-%d-d.npy", name, np)), filepath.Join(dir, fmt.Sprintf("%s-%d-i.npy", name, np)))
					sD, sI, err := ix.Search(td.queries.Data, nq, kk, np)
					if err != nil {
						t.Fatal(err)
					}
					what := fmt.Sprintf("nprobe %d", np)
					if c.cosineAsL2 {
						// FAISS's squared L2 between unit vectors d is
						// Shelf's cosine 1 - d/2.
						for i, v := range fD {
							fD[i] = 1 - v/2
						}
					}
					if c.metric != ivf.Cosine || c.cosineAsL2 || (ix.Params().Flat && np == 32) {
						compareResults(t, what, nq, kk, k, sD, sI, fD, fI)
						continue
					}
					checkCosineExport(t, what, ix, qn, kk, k, sI, fD, fI)
				}
			})
		}
	}
}

// checkCosineExport checks FAISS's results on a cosine index exported as
// inner product, which FAISS ranks by inner product where Shelf ranks by
// the L2 distance of unit vectors and probes lists by L2 (the rankings
// differ, see Write): every FAISS score must be the inner product of
// the normalized query with the stored vector Shelf reconstructs for that
// id.
func checkCosineExport(t *testing.T, what string, ix *ivf.Index, qn vecio.Matrix, kk, k int, sI []int64, fD []float32, fI []int64) {
	t.Helper()
	common := 0
	for q := 0; q < qn.N; q++ {
		for j := 0; j < k; j++ {
			id := fI[q*kk+j]
			v, err := ix.Reconstruct(id)
			if err != nil {
				t.Fatalf("%s: query %d: FAISS id %d: %v", what, q, id, err)
			}
			var ip float64
			for i, x := range v {
				ip += float64(x) * float64(qn.Row(q)[i])
			}
			if math.Abs(ip-float64(fD[q*kk+j])) > 1e-4 {
				t.Fatalf("%s: query %d rank %d: FAISS score %g, inner product with the stored vector %g", what, q, j, fD[q*kk+j], ip)
			}
			if slices.Contains(sI[q*kk:q*kk+k], id) {
				common++
			}
		}
	}
	t.Logf("%s: FAISS and Shelf share %.2f of their top %d", what, float64(common)/float64(qn.N*k), k)
}

// sameLists requires two indexes to hold the same lists, entry for entry.
func sameLists(t *testing.T, a, b *ivf.Index) {
	t.Helper()
	sa, err := a.Lists().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Release()
	sb, err := b.Lists().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Release()
	if sa.NumLists() != sb.NumLists() || sa.CodeSize() != sb.CodeSize() {
		t.Fatalf("%d lists of %d bytes vs %d of %d", sa.NumLists(), sa.CodeSize(), sb.NumLists(), sb.CodeSize())
	}
	for l := 0; l < sa.NumLists(); l++ {
		ia, ca, err := sa.ReadList(l)
		if err != nil {
			t.Fatal(err)
		}
		ib, cb, err := sb.ReadList(l)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ia, ib) || !bytes.Equal(ca, cb) {
			t.Fatalf("list %d differs: %d entries vs %d", l, len(ia), len(ib))
		}
	}
}

// modelFile returns the model file of an index directory of ix's
// training.
func modelFile(t *testing.T, ix *ivf.Index) []byte {
	t.Helper()
	m, err := ivf.NewTrained(ix.Params(), ix.Centroids(), ix.PQ())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if err := m.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, err := os.ReadFile(filepath.Join(dir, "model.shelf"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFAISSRoundTrip exports Shelf indexes and reads them back: the same
// model (parameters, centroids, codebooks) and the same lists, entry for
// entry, in memory and into an index directory.
func TestFAISSRoundTrip(t *testing.T) {
	dir := t.TempDir()
	td := faissTestData{base: synth.Clustered(3000, 16, 20, 5)}
	td.ids = make([]int64, td.base.N)
	for i := range td.ids {
		td.ids[i] = -2 - int64(i)*977 // negative ids too (-1 is no id)
	}
	for _, c := range []struct {
		factory string
		metric  ivf.Metric
		byRes   bool
		asL2    bool
	}{{"IVF16,PQ4", ivf.L2, true, false}, {"IVF16,PQ8", ivf.InnerProduct, true, false}, {"IVF8,PQ4", ivf.L2, false, false},
		{"IVF16,PQ4", ivf.Cosine, true, false}, {"IVF16,PQ4", ivf.Cosine, true, true}, {"IVF16,Flat", ivf.L2, true, false}, {"IVF8,Flat", ivf.Cosine, true, false}} {
		ix := shelfTestIndex(t, c.factory, c.metric, c.byRes, td)
		// Removals leave a next id above every id, which the file cannot
		// carry: the import takes max(ntotal, largest id + 1), here ntotal
		// (the ids given are negative, the sequential ones < ntotal).
		if _, err := ix.RemoveRange(ix.NextID()-10, ix.NextID()); err != nil {
			t.Fatal(err)
		}
		wantNext := max(ix.NTotal(), ix.NextID()-10)
		for _, ondisk := range []bool{false, true} {
			name := fmt.Sprintf("%s-%s-%v-%v-%v", c.factory, c.metric, c.byRes, c.asL2, ondisk)
			t.Run(name, func(t *testing.T) {
				path := filepath.Join(dir, name+".index")
				opts := &ExportOptions{CosineAsInnerProduct: c.metric == ivf.Cosine && !c.asL2}
				if ondisk {
					opts.OnDiskData = filepath.Join(dir, name+".ivfdata")
				}
				if err := Write(ix, path, opts); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(path + ".tmp"); err == nil {
					t.Fatal("the temporary file is left")
				}
				iopts := &ImportOptions{Cosine: c.metric == ivf.Cosine}
				mem, err := ReadWith(path, iopts)
				if err != nil {
					t.Fatal(err)
				}
				disk, err := Import(path, filepath.Join(dir, name+"-shelf"), iopts)
				if err != nil {
					t.Fatal(err)
				}
				defer disk.Close()
				for _, back := range []*ivf.Index{mem, disk} {
					if err := ix.SameTraining(back); err != nil {
						t.Fatal(err)
					}
					sameLists(t, ix, back)
					if back.NextID() != wantNext {
						t.Fatalf("next id %d, want %d", back.NextID(), wantNext)
					}
				}
				// The model file of the import is the one ix's training makes.
				b, err := os.ReadFile(filepath.Join(disk.Dir(), "model.shelf"))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(modelFile(t, ix), b) {
					t.Fatal("the model files differ")
				}
				if c.metric == ivf.Cosine {
					// Without the option it is what the file says.
					want := ivf.InnerProduct
					if c.asL2 {
						want = ivf.L2
					}
					plain, err := Read(path)
					if err != nil || plain.Params().Metric != want {
						t.Fatalf("cosine export read back as %v (%v)", plain.Params().Metric, err)
					}
				}
			})
		}
	}

	t.Run("empty and on disk", func(t *testing.T) {
		// A trained empty index, from an index directory.
		ix := shelfTestIndex(t, "IVF8,PQ4", ivf.L2, true, td)
		empty, err := ivf.NewTrained(ix.Params(), ix.Centroids(), ix.PQ())
		if err != nil {
			t.Fatal(err)
		}
		if err := empty.ToDisk(filepath.Join(dir, "empty-shelf")); err != nil {
			t.Fatal(err)
		}
		defer empty.Close()
		for _, ondisk := range []string{"", filepath.Join(dir, "empty.ivfdata")} {
			path := filepath.Join(dir, "empty.index")
			if err := Write(empty, path, &ExportOptions{OnDiskData: ondisk}); err != nil {
				t.Fatal(err)
			}
			back, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if back.NTotal() != 0 || back.NextID() != 0 || back.SameTraining(empty) != nil {
				t.Fatalf("empty round trip: %d vectors, next id %d", back.NTotal(), back.NextID())
			}
		}
	})

	t.Run("failed import", func(t *testing.T) {
		// A NaN in the last list of an IVF-Flat file is found while the
		// lists are merged: nothing of the import may remain.
		ix := shelfTestIndex(t, "IVF8,Flat", ivf.L2, true, td)
		path := filepath.Join(dir, "nan.index")
		if err := Write(ix, path, nil); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		ff, err := parse(bytesReaderAt(raw), int64(len(raw)), path, openRegular)
		if err != nil {
			t.Fatal(err)
		}
		last := len(ff.sizes) - 1
		binary.LittleEndian.PutUint32(raw[ff.codeOff[last]:], math.Float32bits(float32(math.NaN())))
		os.WriteFile(path, raw, 0o644)
		target := filepath.Join(dir, "nan-shelf")
		_, err = Import(path, target, nil)
		if !errors.Is(err, ivf.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("list %d", last)) {
			t.Fatalf("import of a NaN vector: %v", err)
		}
		if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the failed import left %s: %v", target, err)
		}
		// Into an existing empty directory: the directory stays, empty.
		os.Mkdir(target, 0o755)
		if _, err := Import(path, target, nil); !errors.Is(err, ivf.ErrCorrupt) {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(target); len(ents) != 0 {
			t.Fatalf("the failed import left %v in %s", ents, target)
		}
	})

	t.Run("legacy", func(t *testing.T) {
		for _, tag := range []string{"IvPQ", "IvFL", "IvFl"} {
			factory := "IVF8,PQ4"
			if tag != "IvPQ" {
				factory = "IVF8,Flat"
			}
			ix := shelfTestIndex(t, factory, ivf.L2, true, td)
			back, err := readBytes(legacyFAISS(t, ix, tag), "legacy.index", nil)
			if err != nil {
				t.Fatalf("%s: %v", tag, err)
			}
			if err := ix.SameTraining(back); err != nil {
				t.Fatal(err)
			}
			sameLists(t, ix, back)
		}
	})
}

// legacyFAISS writes ix in FAISS's pre-2018 layout ("IvPQ", "IvFL",
// "IvFl"): ids and codes as one vector per list.
func legacyFAISS(t testing.TB, ix *ivf.Index, tag string) []byte {
	t.Helper()
	p := ix.Params()
	var out bytes.Buffer
	le := binary.LittleEndian
	u64 := func(v uint64) { out.Write(le.AppendUint64(nil, v)) }
	floats := func(v []float32) {
		u64(uint64(len(v)))
		for _, x := range v {
			out.Write(le.AppendUint32(nil, math.Float32bits(x)))
		}
	}
	header := func(ntotal int64) {
		out.Write(le.AppendUint32(nil, uint32(p.D)))
		u64(uint64(ntotal))
		u64(1 << 20)
		u64(1 << 20)
		out.WriteByte(1)
		out.Write(le.AppendUint32(nil, metricL2))
	}
	s, _ := ix.Lists().Snapshot()
	defer s.Release()
	out.WriteString(tag)
	header(ix.NTotal())
	u64(uint64(p.NList))
	u64(1)
	out.WriteString("IxF2")
	header(int64(p.NList))
	floats(ix.Centroids())
	for l := 0; l < p.NList; l++ {
		ids, _, _ := s.ReadList(l)
		u64(uint64(len(ids)))
		for _, id := range ids {
			u64(uint64(id))
		}
	}
	out.WriteByte(0) // no direct map
	u64(0)
	if tag == "IvPQ" {
		out.WriteByte(1)
		u64(uint64(p.M))
		u64(uint64(p.D))
		u64(uint64(p.M))
		u64(8)
		floats(ix.PQ().Centroids)
	}
	for l := 0; l < p.NList; l++ {
		_, codes, _ := s.ReadList(l)
		if tag == "IvFl" {
			u64(uint64(len(codes) / 4))
		} else {
			u64(uint64(len(codes)))
		}
		out.Write(codes)
	}
	return out.Bytes()
}

// memData is an on-disk list data file held in memory.
type memData struct{ bytesReaderAt }

func (m memData) Size() int64  { return int64(len(m.bytesReaderAt)) }
func (m memData) Close() error { return nil }

// smallFAISSFiles returns small valid FAISS files written by Write
// (and one legacy file): name -> index bytes, and the data file of the
// on-disk one.
func smallFAISSFiles(t testing.TB) (map[string][]byte, []byte) {
	dir := t.TempDir()
	x := synth.Clustered(600, 8, 6, 2)
	ids := make([]int64, x.N)
	for i := range ids {
		ids[i] = int64(i) * 3
	}
	files := map[string][]byte{}
	var data []byte
	for _, c := range []struct {
		name, factory string
		metric        ivf.Metric
		ondisk        bool
	}{{"pq", "IVF4,PQ2", ivf.L2, false}, {"flat-ip", "IVF4,Flat", ivf.InnerProduct, false}, {"pq-ondisk", "IVF4,PQ2", ivf.L2, true},
		{"rq", "IVF4,RQ2x8", ivf.L2, false}} {
		ix, err := ivf.NewFromFactory(c.factory, x.D, c.metric)
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Train(x.Data, x.N, &ivf.TrainOptions{Seed: 1}); err != nil {
			t.Fatal(err)
		}
		n := 40
		if err := ix.AddWithIDs(x.Data[:n*x.D], n, ids[:n]); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, c.name+".index")
		var opts *ExportOptions
		if c.ondisk {
			opts = &ExportOptions{OnDiskData: filepath.Join(dir, "small.ivfdata")}
		}
		if err := Write(ix, path, opts); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[c.name] = b
		if c.ondisk {
			if data, err = os.ReadFile(opts.OnDiskData); err != nil {
				t.Fatal(err)
			}
		}
		if c.name == "pq" {
			files["legacy"] = legacyFAISS(t, ix, "IvPQ")
		}
		if c.name == "rq" {
			// FAISS's default IVF,RQ norms (none: Shelf re-encodes them).
			files["rq-decompress"] = rqRecoded(t, b, nil)
		}
	}
	return files, data
}

// TestReadFAISSCorrupt truncates small valid files at every length and
// flips their bytes: every failure must be ErrCorrupt (or, where a flip
// turns a type tag into another one, ErrUnsupported), never a panic or a
// huge allocation.
func TestReadFAISSCorrupt(t *testing.T) {
	files, data := smallFAISSFiles(t)
	withData := func(d []byte) *ImportOptions {
		return &ImportOptions{openData: func(string) (dataFile, error) { return memData{bytesReaderAt(d)}, nil }}
	}
	for name, b := range files {
		if _, err := readBytes(b, name, withData(data)); err != nil {
			t.Fatalf("%s: the valid file fails: %v", name, err)
		}
		for cut := 0; cut < len(b); cut++ {
			_, err := readBytes(b[:cut], name, withData(data))
			if !errors.Is(err, ivf.ErrCorrupt) {
				t.Fatalf("%s cut at %d of %d: %v", name, cut, len(b), err)
			}
			if !strings.Contains(err.Error(), "at byte") {
				t.Fatalf("%s cut at %d: the error names no offset: %v", name, cut, err)
			}
		}
		for i := range b {
			// Every byte of the fields; a sample of the floats and codes.
			if i >= 256 && i < len(b)-600 && i%53 != 0 {
				continue
			}
			for _, mask := range []byte{0xff, 0x01, 0x80, 0x40} {
				c := slices.Clone(b)
				c[i] ^= mask
				_, err := readBytes(c, name, withData(data))
				if err != nil && !isParseError(err) && !errors.Is(err, ivf.ErrNotTrained) {
					t.Fatalf("%s byte %d ^ %#x: %v", name, i, mask, err)
				}
			}
		}
	}
	// The on-disk data file cut short: the lists no longer fit.
	for cut := 0; cut < len(data); cut += 7 {
		if _, err := readBytes(files["pq-ondisk"], "pq-ondisk", withData(data[:cut])); !errors.Is(err, ivf.ErrCorrupt) {
			t.Fatalf("data file cut at %d of %d: %v", cut, len(data), err)
		}
	}

	// Targeted damage, with the field named.
	b := files["pq"]
	le := binary.LittleEndian
	// Layout of the small PQ file: fourcc, header (33 bytes), nlist,
	// nprobe, then the quantizer.
	const q = 4 + 33 + 16
	qd := q + 4
	cents := q + 4 + 33 + 8 // first centroid float
	nc := 4 * 8             // nlist x d
	dm := cents + 4*nc
	pqAt := dm + 9 + 1 + 8 // by_residual, code_size, then the PQ
	for _, c := range []struct {
		name string
		edit func(c []byte)
		want string
	}{
		{"NaN centroid", func(c []byte) { le.PutUint32(c[cents+4:], math.Float32bits(float32(math.NaN()))) }, "centroids at byte"},
		{"Inf PQ centroid", func(c []byte) { le.PutUint32(c[pqAt+32+40:], math.Float32bits(float32(math.Inf(1)))) }, "PQ centroids at byte"},
		{"quantizer dimension", func(c []byte) { le.PutUint32(c[qd:], 9) }, "quantizer d"},
		{"huge centroid count", func(c []byte) { le.PutUint64(c[cents-8:], 1<<62) }, "centroids at byte"},
		{"PQ dimension", func(c []byte) { le.PutUint64(c[pqAt:], 16) }, "PQ d at byte"},
		{"code size", func(c []byte) { le.PutUint64(c[pqAt-8:], 3) }, "code_size at byte"},
		{"HNSW quantizer", func(c []byte) { copy(c[q:], "IHNf") }, `quantizer "IHNf" (IndexHNSWFlat) is not supported`},
		{"nbits", func(c []byte) { le.PutUint64(c[pqAt+16:], 4) }, "nbits = 4"},
		{"metric", func(c []byte) { le.PutUint32(c[4+29:], 2) }, "METRIC_L1"},
		{"not FAISS", func(c []byte) { copy(c, "\x00\x01\x02\x03") }, "not a FAISS index file"},
	} {
		d := slices.Clone(b)
		c.edit(d)
		_, err := readBytes(d, "x.index", nil)
		if !isParseError(err) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "x.index") {
			t.Errorf("%s: %v (want an error naming %q)", c.name, err, c.want)
		}
	}

	// The same for the residual quantizer of the small IVF4,RQ2x8 file.
	b = files["rq"]
	csAt, stAt, qnormAt, listsAt := rqFileLayout(ivf.Params{D: 8, NList: 4, M: 2})
	for _, c := range []struct {
		name string
		edit func(c []byte)
		want string
	}{
		{"RQ dimension", func(c []byte) { le.PutUint64(c[csAt+8:], 9) }, "RQ d at byte"},
		{"RQ layers", func(c []byte) { le.PutUint64(c[csAt+16:], 3) }, "RQ nbits at byte"},
		{"RQ huge layers", func(c []byte) { le.PutUint64(c[csAt+16:], 1<<40) }, "RQ M at byte"},
		{"RQ nbits", func(c []byte) { le.PutUint64(c[csAt+32:], 4) }, "layer 0 has nbits = 4"},
		{"RQ not trained", func(c []byte) { c[csAt+48] = 0 }, "RQ is_trained at byte"},
		{"RQ huge codebooks", func(c []byte) { le.PutUint64(c[csAt+49:], 1<<61) }, "RQ codebooks at byte"},
		{"NaN codebook", func(c []byte) { le.PutUint32(c[csAt+57+40:], math.Float32bits(float32(math.NaN()))) }, "RQ codebooks at byte"},
		{"search type", func(c []byte) { le.PutUint32(c[stAt:], 42) }, "RQ search_type at byte"},
		{"search type and code size", func(c []byte) { le.PutUint32(c[stAt:], stNormFloat) }, "code_size at byte"},
		{"qnorm count", func(c []byte) { le.PutUint64(c[qnormAt:], 255) }, "RQ qnorm at byte"},
		{"Inf qnorm", func(c []byte) { le.PutUint32(c[qnormAt+8+40:], math.Float32bits(float32(math.Inf(1)))) }, "RQ qnorm at byte"},
		{"code size", func(c []byte) { le.PutUint64(c[csAt:], 4) }, "code_size at byte"},
		{"beam", func(c []byte) { le.PutUint32(c[listsAt-9:], 0) }, "RQ max_beam_size at byte"},
		{"by_residual", func(c []byte) { c[listsAt-5] = 7 }, "by_residual at byte"},
		{"use_precomputed_table", func(c []byte) { le.PutUint32(c[listsAt-4:], 9) }, "use_precomputed_table at byte"},
		{"lists code size", func(c []byte) { le.PutUint64(c[listsAt+12:], 2) }, "inverted lists code_size at byte"},
	} {
		d := slices.Clone(b)
		c.edit(d)
		_, err := readBytes(d, "x.index", nil)
		if !isParseError(err) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "x.index") {
			t.Errorf("%s: %v (want an error naming %q)", c.name, err, c.want)
		}
	}
}

// FuzzReadFAISS feeds arbitrary bytes to the FAISS reader: errors are
// fine, panics and other error kinds are not, and whatever it accepts
// must be searchable.
func FuzzReadFAISS(f *testing.F) {
	files, data := smallFAISSFiles(f)
	for _, b := range files {
		f.Add(b)
	}
	opts := &ImportOptions{openData: func(string) (dataFile, error) { return memData{bytesReaderAt(data)}, nil }}
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := readBytes(b, "fuzz.index", opts)
		if err != nil {
			if !isParseError(err) && !errors.Is(err, ivf.ErrNotTrained) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		q := make([]float32, ix.Params().D)
		q[0] = 1
		if _, _, err := ix.Search(q, 1, 3, 2); err != nil {
			t.Fatalf("search of an accepted file: %v", err)
		}
	})
}

// rqFileLayout locates the fields of an "IwRQ" file written by Write
// (empty direct map): the code size, the search type, the end of the
// qnorm levels and the start of the inverted lists.
func rqFileLayout(p ivf.Params) (csAt, stAt, qnormAt, listsAt int) {
	csAt = 4 + 33 + 16 + 4 + 33 + 8 + 4*p.NList*p.D + 9
	stAt = csAt + 8 + 16 + 8 + 8*p.M + 1 + 8 + 4*p.M*256*p.D
	qnormAt = stAt + 12 // u64 count, then 256 floats
	listsAt = qnormAt + 8 + 4*256 + 4 + 4 + 1 + 4
	return
}

// rqRecoded rewrites the "IwRQ" file b (written by Write, lists inline)
// as FAISS would write the same codes with another norm encoding:
// ST_decompress (no norm in the codes) if perm is nil, else ST_norm_cqint8
// with the levels renumbered by perm (level i moves to perm[i]) and every
// code's norm byte with it.
func rqRecoded(t testing.TB, b []byte, perm []byte) []byte {
	t.Helper()
	ff, err := parse(bytesReaderAt(b), int64(len(b)), "rq.index", openRegular)
	if err != nil {
		t.Fatal(err)
	}
	p := ff.p
	csAt, stAt, qnormAt, listsAt := rqFileLayout(p)
	le := binary.LittleEndian
	out := slices.Clone(b[:listsAt])
	tail := out[qnormAt+8+4*256:]
	if perm == nil {
		le.PutUint64(out[csAt:], uint64(p.M))
		le.PutUint32(out[stAt:], stDecompress)
		out = append(slices.Clone(out[:qnormAt]), tail...)
	} else {
		levels := slices.Clone(out[qnormAt+8 : qnormAt+8+4*256])
		for i := range 256 {
			copy(out[qnormAt+8+4*int(perm[i]):], levels[4*i:4*i+4])
		}
	}
	cs := p.M + 1
	out = append(out, "ilar"...)
	out = le.AppendUint64(out, uint64(p.NList))
	if perm == nil {
		cs = p.M
	}
	out = le.AppendUint64(out, uint64(cs))
	out = append(out, "full"...)
	out = le.AppendUint64(out, uint64(p.NList))
	for _, n := range ff.sizes {
		out = le.AppendUint64(out, uint64(n))
	}
	for l, n := range ff.sizes {
		for i := range n {
			code := b[ff.codeOff[l]+i*int64(p.M+1):][:p.M+1]
			if perm == nil {
				out = append(out, code[:p.M]...)
			} else {
				out = append(out, code[:p.M]...)
				out = append(out, perm[code[p.M]])
			}
		}
		out = append(out, b[ff.idOff[l]:ff.idOff[l]+8*n]...)
	}
	return out
}

// TestImportFAISSRQ has FAISS build IndexIVFResidualQuantizer indexes
// (RQ3x8 with the ST_norm_cqint8 norms Shelf stores: L2 by residual or
// not, inner product, lists inline and on disk; and with FAISS's default
// ST_decompress and ST_norm_float, whose norms Shelf re-encodes) and
// compares Shelf's imports with FAISS's searches: the same ids and
// distances for cqint8, and for the others a share of common results that
// must stay high.
func TestImportFAISSRQ(t *testing.T) {
	faisstest.Require(t)
	dir := t.TempDir()
	const n, d, nq, k, kk, nlist = 5000, 32, 40, 10, 20, 16
	td := newFAISSTestData(t, dir, n, d, nq)
	type tcase struct {
		name, factory, metric, searchType string
		byResidual                        bool
		ondisk                            string
		minAgree                          float64 // 0: results must match
	}
	cases := []tcase{
		{name: "cq8-l2", factory: "IVF16,RQ3x8_Ncqint8", metric: "l2", searchType: "ST_norm_cqint8", byResidual: true},
		{name: "cq8-ip", factory: "IVF16,RQ3x8_Ncqint8", metric: "ip", searchType: "ST_norm_cqint8", byResidual: true},
		{name: "cq8-direct", factory: "IVF16,RQ3x8_Ncqint8", metric: "l2", searchType: "ST_norm_cqint8"},
		{name: "cq8-ondisk", factory: "IVF16,RQ3x8_Ncqint8", metric: "l2", searchType: "ST_norm_cqint8", byResidual: true, ondisk: "cq8.ivfdata"},
		{name: "decompress", factory: "IVF16,RQ3x8", metric: "l2", searchType: "ST_decompress", byResidual: true, minAgree: 0.9},
		{name: "normfloat", factory: "IVF16,RQ3x8_Nfloat", metric: "l2", searchType: "ST_norm_float", byResidual: true, minAgree: 0.9},
	}
	var tasks []faissTask
	for _, c := range cases {
		b := faissTask{"op": "build", "base": td.baseF, "ids": td.idsF, "factory": c.factory, "metric": c.metric,
			"by_residual": c.byResidual, "out": c.name + ".index"}
		if c.ondisk != "" {
			b["ondisk"] = c.ondisk
		}
		tasks = append(tasks, b)
		for _, np := range []int{4, nlist} {
			tasks = append(tasks, faissTask{"op": "search", "index": c.name + ".index", "queries": td.qF, "k": kk, "nprobe": np,
				"dist": fmt.Sprintf("%s-%d-d.npy", c.name, np), "labels": fmt.Sprintf("%s-%d-i.npy", c.name, np)})
		}
	}
	unsupported := map[string]string{"rq4bit": "IVF16,RQ3x4", "rq-mixed": "IVF16,RQ1x10_2x8"}
	for name, f := range unsupported {
		tasks = append(tasks, faissTask{"op": "build", "base": td.baseF, "factory": f, "metric": "l2", "out": "unsup-" + name + ".index"})
	}
	faisstest.RunIO(t, dir, tasks...)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".index")
			info, err := Inspect(path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Type != "IndexIVFResidualQuantizer" || info.M != 3 || info.Nbits != 8 || info.SearchType != c.searchType ||
				info.NTotal != n || info.ByResidual != c.byResidual || (c.ondisk != "") != (info.Lists == "ilod") {
				t.Fatalf("Inspect: %+v", info)
			}
			mem, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			disk, err := Import(path, filepath.Join(dir, c.name+"-shelf"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer disk.Close()
			if err := mem.SameTraining(disk); err != nil {
				t.Fatal(err)
			}
			if p := mem.Params(); !p.RQ || p.M != 3 || p.CodeSize() != 4 || p.ByResidual != c.byResidual || p.NList != nlist {
				t.Fatalf("params %+v", p)
			}
			if q := mem.RQ(); q.BeamSize != 5 || !slices.IsSorted(q.NormLevels) {
				t.Fatalf("RQ beam %d, norm levels sorted %v", q.BeamSize, slices.IsSorted(q.NormLevels))
			}
			for _, np := range []int{4, nlist} {
				fD, fI := readFAISSResults(t, filepath.Join(dir, fmt.Sprintf("%s-%d-d.npy", c.name, np)), filepath.Join(dir, fmt.Sprintf("%s-%d-i.npy", c.name, np)))
				for name, ix := range map[string]*ivf.Index{"Read": mem, "Import": disk} {
					sD, sI, err := ix.Search(td.queries.Data, nq, kk, np)
					if err != nil {
						t.Fatal(err)
					}
					what := fmt.Sprintf("%s nprobe %d", name, np)
					if c.minAgree == 0 {
						compareResults(t, what, nq, kk, k, sD, sI, fD, fI)
						continue
					}
					// Shelf scores with 8-bit norms trained on import,
					// FAISS with exact ones: compare the top k as sets,
					// and the distances of the ids both return.
					common, relErr, pairs := 0, 0.0, 0
					for q := range nq {
						for j := range k {
							id := sI[q*kk+j]
							if at := slices.Index(fI[q*kk:q*kk+k], id); at >= 0 {
								common++
								relErr += math.Abs(float64(sD[q*kk+j]-fD[q*kk+at])) / max(1e-6, math.Abs(float64(fD[q*kk+at])))
								pairs++
							}
						}
					}
					agree := float64(common) / float64(nq*k)
					t.Logf("%s: Shelf and FAISS share %.3f of their top %d; distances of common ids differ by %.4f (mean relative)",
						what, agree, k, relErr/float64(max(pairs, 1)))
					if agree < c.minAgree || relErr/float64(max(pairs, 1)) > 0.02 {
						t.Errorf("%s: agreement %.3f (want >= %.2f), mean relative distance difference %.4f (want <= 0.02)",
							what, agree, c.minAgree, relErr/float64(max(pairs, 1)))
					}
				}
			}
		})
	}

	t.Run("unsorted-levels", func(t *testing.T) {
		// FAISS's levels in another order, the codes' norm bytes with
		// them: Shelf sorts the levels, renumbers the bytes, and
		// searches as before.
		orig, err := Read(filepath.Join(dir, "cq8-l2.index"))
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(t.TempDir(), "x.index")
		if err := Write(orig, tmp, nil); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(tmp)
		perm := make([]byte, 256)
		for i := range perm {
			perm[i] = byte((i*97 + 5) % 256)
		}
		shuffled, err := readBytes(rqRecoded(t, b, perm), "shuffled.index", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shuffled.RQ().NormLevels, orig.RQ().NormLevels) {
			t.Fatal("the norm levels differ after sorting")
		}
		sameLists(t, orig, shuffled)
	})

	t.Run("refusals", func(t *testing.T) {
		for name, msg := range map[string]string{"rq4bit": "nbits = 4", "rq-mixed": "nbits = 10"} {
			_, err := Read(filepath.Join(dir, "unsup-"+name+".index"))
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), msg) {
				t.Errorf("%s: %v (want ErrUnsupported naming %s)", name, err, msg)
			}
		}
	})
}

// TestExportFAISSRQ has Shelf build IVF,RQ indexes (L2 by residual or
// not, inner product), exports them (lists inline and on disk) and
// requires FAISS to read them as IndexIVFResidualQuantizer with
// ST_norm_cqint8, write them back byte for byte, and return Shelf's ids
// and distances; Shelf reads its exports back unchanged.
func TestExportFAISSRQ(t *testing.T) {
	faisstest.Require(t)
	dir := t.TempDir()
	const n, d, nq, k, kk, nlist = 4000, 32, 40, 10, 20, 16
	td := newFAISSTestData(t, dir, n, d, nq)
	cases := []struct {
		name       string
		metric     ivf.Metric
		byResidual bool
	}{{"rq-l2", ivf.L2, true}, {"rq-ip", ivf.InnerProduct, true}, {"rq-l2-direct", ivf.L2, false}}
	indexes := map[string]*ivf.Index{}
	var tasks []faissTask
	for _, c := range cases {
		ix := shelfTestIndex(t, "IVF16,RQ3x8", c.metric, c.byResidual, td)
		indexes[c.name] = ix
		for _, ondisk := range []bool{false, true} {
			name := c.name
			opts := &ExportOptions{}
			if ondisk {
				name += "-od"
				opts.OnDiskData = filepath.Join(dir, name+".ivfdata")
			}
			if err := Write(ix, filepath.Join(dir, name+".index"), opts); err != nil {
				t.Fatal(err)
			}
			tasks = append(tasks, faissTask{"op": "info", "index": name + ".index", "out": name + ".json"},
				faissTask{"op": "rewrite", "index": name + ".index", "out": name + "-rewritten.index"})
			for _, np := range []int{4, nlist} {
				tasks = append(tasks, faissTask{"op": "search", "index": name + ".index", "queries": td.qF, "k": kk, "nprobe": np,
					"dist": fmt.Sprintf("%s-%d-d.npy", name, np), "labels": fmt.Sprintf("%s-%d-i.npy", name, np)})
			}
		}
	}
	faisstest.RunIO(t, dir, tasks...)

	for _, c := range cases {
		ix := indexes[c.name]
		for _, ondisk := range []bool{false, true} {
			name := c.name
			if ondisk {
				name += "-od"
			}
			t.Run(name, func(t *testing.T) {
				var info struct {
					Type     string `json:"type"`
					NTotal   int64  `json:"ntotal"`
					Metric   string `json:"metric"`
					CodeSize int    `json:"code_size"`
					RQ       struct {
						M          int  `json:"M"`
						SearchType int  `json:"search_type"`
						Beam       int  `json:"max_beam_size"`
						TrainType  int  `json:"train_type"`
						ByResidual bool `json:"by_residual"`
					} `json:"rq"`
				}
				raw, err := os.ReadFile(filepath.Join(dir, name+".json"))
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(raw, &info); err != nil {
					t.Fatal(err)
				}
				wantMetric := map[ivf.Metric]string{ivf.L2: "l2", ivf.InnerProduct: "ip"}[c.metric]
				if info.Type != "IndexIVFResidualQuantizer" || info.NTotal != n || info.Metric != wantMetric || info.CodeSize != 4 ||
					info.RQ.M != 3 || info.RQ.SearchType != stNormCqint8 || info.RQ.Beam != ix.RQ().BeamSize ||
					info.RQ.TrainType != rqTrainDefault || info.RQ.ByResidual != c.byResidual {
					t.Fatalf("FAISS read %s", raw)
				}
				ours, _ := os.ReadFile(filepath.Join(dir, name+".index"))
				theirs, _ := os.ReadFile(filepath.Join(dir, name+"-rewritten.index"))
				if !bytes.Equal(ours, theirs) {
					t.Errorf("FAISS's write_index of the export differs from it (%d vs %d bytes)", len(theirs), len(ours))
				}
				back, err := Read(filepath.Join(dir, name+".index"))
				if err != nil {
					t.Fatal(err)
				}
				if err := ix.SameTraining(back); err != nil {
					t.Fatal(err)
				}
				sameLists(t, ix, back)
				for _, np := range []int{4, nlist} {
					fD, fI := readFAISSResults(t, filepath.Join(dir, fmt.Sprintf("%s-%d-d.npy", name, np)), filepath.Join(dir, fmt.Sprintf("%s-%d-i.npy", name, np)))
					sD, sI, err := ix.Search(td.queries.Data, nq, kk, np)
					if err != nil {
						t.Fatal(err)
					}
					compareResults(t, fmt.Sprintf("nprobe %d", np), nq, kk, k, sD, sI, fD, fI)
				}
			})
		}
	}
}
