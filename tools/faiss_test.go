package tools

import (
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

func faissSearchResults(t *testing.T, dir, name string) ([]float32, []int64) {
	t.Helper()
	m, err := vecio.ReadFloat32(filepath.Join(dir, name+"-d.npy"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, ids, err := vecio.ReadInt64(filepath.Join(dir, name+"-i.npy"))
	if err != nil {
		t.Fatal(err)
	}
	return m.Data, ids
}

// TestFAISSBinary drives import-faiss and export-faiss through the real
// binary: FAISS builds an IVF-PQ index (lists inline, and on disk), shelf
// imports it, searches it as FAISS does, exports it back (inline and
// OnDiskInvertedLists), and FAISS searching the export returns exactly
// what it returned on its own file.
func TestFAISSBinary(t *testing.T) {
	faisstest.Require(t)
	bin := buildShelf(t)
	dir := t.TempDir()
	const n, d, nq, k = 4000, 16, 50, 5
	base := synth.Clustered(n, d, 30, 9)
	queries := synth.Queries(nq, d, 30, 9)
	baseF, qF, idsF := filepath.Join(dir, "base.fvecs"), filepath.Join(dir, "q.fvecs"), filepath.Join(dir, "ids.npy")
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = 500_000 + 7*int64(i)
	}
	if err := vecio.WriteFvecs(baseF, base); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteFvecs(qF, queries); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteNpyInt64(idsF, ids); err != nil {
		t.Fatal(err)
	}
	search := func(index, name string) map[string]any {
		return map[string]any{"op": "search", "index": index, "queries": qF, "k": k, "nprobe": 4,
			"dist": name + "-d.npy", "labels": name + "-i.npy"}
	}
	faisstest.RunIO(t, dir,
		map[string]any{"op": "build", "base": baseF, "ids": idsF, "factory": "IVF16,PQ4", "metric": "l2", "by_residual": true, "out": "in.index"},
		map[string]any{"op": "build", "base": baseF, "ids": idsF, "factory": "IVF16,PQ4", "metric": "l2", "by_residual": true,
			"out": "in-od.index", "ondisk": "in-od.ivfdata"},
		search("in.index", "in"))
	inD, inI := faissSearchResults(t, dir, "in")

	idx := filepath.Join(dir, "idx")
	out, errOut, code := shelfRun(t, bin, "import-faiss", "--faiss", filepath.Join(dir, "in.index"), "--index", idx)
	if code != 0 || errOut != "" {
		t.Fatalf("import-faiss: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"IndexIVFPQ", "d=16", "nlist=16", "M=4", "metric l2", "4000", "vectors/s", "MB/s", "inline"} {
		if !strings.Contains(out, want) {
			t.Errorf("import-faiss output lacks %q:\n%s", want, out)
		}
	}
	out = shelfOK(t, bin, "import-faiss", "--faiss", filepath.Join(dir, "in-od.index"), "--index", filepath.Join(dir, "idx-od"), "--quiet")
	if !strings.Contains(out, "in-od.ivfdata") {
		t.Errorf("import-faiss of an on-disk index does not name its data file:\n%s", out)
	}

	// The imported index searches as FAISS does (ties aside: almost every
	// query's top 5 is the same list).
	ix, err := ivf.OpenReadOnly(idx)
	if err != nil {
		t.Fatal(err)
	}
	sD, sI, err := ix.Search(queries.Data, nq, k, 4)
	ix.Close()
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for q := 0; q < nq; q++ {
		if slices.Equal(sI[q*k:(q+1)*k], inI[q*k:(q+1)*k]) {
			same++
		}
		for j := 0; j < k; j++ {
			if a, b := float64(sD[q*k+j]), float64(inD[q*k+j]); math.Abs(a-b) > 1e-4*max(1, math.Abs(b)) {
				t.Fatalf("query %d rank %d: shelf distance %g, FAISS %g", q, j, a, b)
			}
		}
	}
	if same < nq*9/10 {
		t.Fatalf("only %d of %d queries have FAISS's top %d", same, nq, k)
	}
	// shelf search works on it.
	shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--nprobe", "4", "--k", "5")

	// Export, inline and on disk: FAISS finds exactly what it found.
	out, errOut, code = shelfRun(t, bin, "export-faiss", "--index", idx, "--faiss", filepath.Join(dir, "out.index"))
	if code != 0 || errOut != "" || !strings.Contains(out, "IndexIVFPQ") || !strings.Contains(out, "inline") {
		t.Fatalf("export-faiss: exit %d, stderr %q\n%s", code, errOut, out)
	}
	out = shelfOK(t, bin, "export-faiss", "--index", idx, "--faiss", filepath.Join(dir, "out-od.index"),
		"--ondisk", filepath.Join(dir, "out-od.ivfdata"), "--quiet")
	if !strings.Contains(out, "OnDiskInvertedLists") {
		t.Errorf("export-faiss --ondisk output:\n%s", out)
	}
	faisstest.RunIO(t, dir, search("out.index", "out"), search("out-od.index", "out-od"))
	for _, name := range []string{"out", "out-od"} {
		fD, fI := faissSearchResults(t, dir, name)
		if !slices.Equal(fI, inI) || !slices.Equal(fD, inD) {
			t.Fatalf("FAISS on the %s export differs from FAISS on its own file", name)
		}
	}

	// Errors: one line, exit 1 (2 for the command line).
	if _, errOut, code := shelfRun(t, bin, "import-faiss", "--faiss", filepath.Join(dir, "in.index"), "--index", idx); code != 1 ||
		strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "already holds an index") {
		t.Fatalf("import into an index: exit %d, %q", code, errOut)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "in.index"))
	cut := filepath.Join(dir, "cut.index")
	os.WriteFile(cut, raw[:len(raw)/2], 0o644)
	if _, errOut, code := shelfRun(t, bin, "import-faiss", "--faiss", cut, "--index", filepath.Join(dir, "x")); code != 1 ||
		strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "corrupt") || !strings.Contains(errOut, "cut.index") {
		t.Fatalf("import of a truncated file: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Fatalf("a failed import left its directory: %v", err)
	}
	if _, errOut, code := shelfRun(t, bin, "import-faiss", "--index", filepath.Join(dir, "y")); code != 2 {
		t.Fatalf("import-faiss without --faiss: exit %d, %q", code, errOut)
	}
	if _, errOut, code := shelfRun(t, bin, "export-faiss", "--index", idx, "--faiss", filepath.Join(dir, "nosuch", "o.index")); code != 1 ||
		strings.Count(errOut, "\n") != 1 {
		t.Fatalf("export into a missing directory: exit %d, %q", code, errOut)
	}
	if _, errOut, code := shelfRun(t, bin, "export-faiss", "--index", idx, "--faiss", "a.index", "--ondisk", "a.index"); code != 2 {
		t.Fatalf("--ondisk = --faiss: exit %d, %q", code, errOut)
	}
	for _, c := range []string{"import-faiss", "export-faiss"} {
		if out, _, code := shelfRun(t, bin, c, "--help"); code != 0 || !strings.Contains(out, "Example:") {
			t.Fatalf("%s --help: exit %d\n%s", c, code, out)
		}
	}
}

// TestFAISSBinaryRQ: the same round trip for an IVF-RQ index with FAISS's
// norm byte (IVF16,RQ3x8_Ncqint8): shelf imports FAISS's file and finds
// FAISS's neighbours at FAISS's distances, and FAISS searching shelf's
// export (inline and on disk) finds exactly what it found on its own file.
func TestFAISSBinaryRQ(t *testing.T) {
	faisstest.Require(t)
	bin := buildShelf(t)
	dir := t.TempDir()
	const n, d, nq, k = 3000, 16, 40, 5
	base := synth.Clustered(n, d, 30, 11)
	queries := synth.Queries(nq, d, 30, 11)
	baseF, qF := filepath.Join(dir, "base.fvecs"), filepath.Join(dir, "q.fvecs")
	if err := vecio.WriteFvecs(baseF, base); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteFvecs(qF, queries); err != nil {
		t.Fatal(err)
	}
	search := func(index, name string) map[string]any {
		return map[string]any{"op": "search", "index": index, "queries": qF, "k": k, "nprobe": 4,
			"dist": name + "-d.npy", "labels": name + "-i.npy"}
	}
	faisstest.RunIO(t, dir,
		map[string]any{"op": "build", "base": baseF, "factory": "IVF16,RQ3x8_Ncqint8", "metric": "l2", "by_residual": true, "out": "in.index"},
		search("in.index", "in"))
	inD, inI := faissSearchResults(t, dir, "in")

	idx := filepath.Join(dir, "idx")
	out := shelfOK(t, bin, "import-faiss", "--faiss", filepath.Join(dir, "in.index"), "--index", idx)
	for _, want := range []string{"IndexIVFResidualQuantizer", "nlist=16", "3000"} {
		if !strings.Contains(out, want) {
			t.Errorf("import-faiss output lacks %q:\n%s", want, out)
		}
	}
	res := filepath.Join(dir, "shelf.ivecs")
	shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--nprobe", "4", "--k", "5", "--out", res)
	sD, err := vecio.ReadFloat32(strings.TrimSuffix(res, ".ivecs") + ".fvecs")
	if err != nil {
		t.Fatal(err)
	}
	_, _, ids, err := vecio.ReadInt64(res)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for q := 0; q < nq; q++ {
		if slices.Equal(ids[q*k:(q+1)*k], inI[q*k:(q+1)*k]) {
			same++
		}
		for j := 0; j < k; j++ {
			if a, b := float64(sD.Data[q*k+j]), float64(inD[q*k+j]); math.Abs(a-b) > 1e-3*max(1, math.Abs(b)) {
				t.Fatalf("query %d rank %d: shelf distance %g, FAISS %g", q, j, a, b)
			}
		}
	}
	if same < nq*9/10 {
		t.Fatalf("only %d of %d queries have FAISS's top %d", same, nq, k)
	}

	shelfOK(t, bin, "export-faiss", "--index", idx, "--faiss", filepath.Join(dir, "out.index"), "--quiet")
	shelfOK(t, bin, "export-faiss", "--index", idx, "--faiss", filepath.Join(dir, "out-od.index"),
		"--ondisk", filepath.Join(dir, "out-od.ivfdata"), "--quiet")
	faisstest.RunIO(t, dir, search("out.index", "out"), search("out-od.index", "out-od"))
	for _, name := range []string{"out", "out-od"} {
		fD, fI := faissSearchResults(t, dir, name)
		if !slices.Equal(fI, inI) || !slices.Equal(fD, inD) {
			t.Fatalf("FAISS on the %s export differs from FAISS on its own file", name)
		}
	}
}
