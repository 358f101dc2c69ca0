package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// shelfRun runs the binary and returns stdout, stderr and the exit code.
func shelfRun(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("shelf %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// shelfOK runs the binary and fails the test unless it exits 0.
func shelfOK(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, errOut, code := shelfRun(t, bin, args...)
	if code != 0 {
		t.Fatalf("shelf %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

type searchLine struct {
	NProbe  int      `json:"nprobe"`
	K       int      `json:"k"`
	QPS     float64  `json:"qps"`
	Recall1 *float64 `json:"recall1"`
	RecallK *float64 `json:"recallk"`
	NQ      int      `json:"nq"`
	Threads int      `json:"threads"`
}

func parseSearchJSON(t *testing.T, out string) []searchLine {
	t.Helper()
	var res []searchLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var s searchLine
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("search --json line %q: %v", l, err)
		}
		res = append(res, s)
	}
	return res
}

// TestBuildSearchBinary drives groundtruth, build, add and search through
// the real binary on one small data set, as a user would.
func TestBuildSearchBinary(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	const n, d, nq, clusters = 20000, 32, 200, 100
	base := synth.Clustered(n, d, clusters, 7)
	queries := synth.Queries(nq, d, clusters, 7)
	baseF := filepath.Join(dir, "base.fvecs")
	qF := filepath.Join(dir, "q.fvecs")
	gtF := filepath.Join(dir, "gt.ivecs")
	idx := filepath.Join(dir, "idx")
	if err := vecio.WriteFvecs(baseF, base); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteFvecs(qF, queries); err != nil {
		t.Fatal(err)
	}

	t.Run("groundtruth build search", func(t *testing.T) {
		shelfOK(t, bin, "groundtruth", "--data", baseF, "--queries", qF, "--k", "20", "--out", gtF)
		gn, gd, _, err := vecio.ReadInt32(gtF)
		if err != nil || gn != nq || gd != 20 {
			t.Fatalf("groundtruth wrote %dx%d (%v), want %dx20", gn, gd, err, nq)
		}
		out := shelfOK(t, bin, "build", "--data", baseF, "--index", idx, "--factory", "IVF64,PQ8", "--quiet")
		if !strings.Contains(out, "20000") || !strings.Contains(out, "on disk") {
			t.Errorf("build summary lacks the vector count or size:\n%s", out)
		}
		res := parseSearchJSON(t, shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--gt", gtF, "--nprobe", "1,64", "--json"))
		if len(res) != 2 || res[0].NProbe != 1 || res[1].NProbe != 64 {
			t.Fatalf("search --nprobe 1,64 gave %+v", res)
		}
		for _, r := range res {
			if r.Recall1 == nil || r.RecallK == nil || r.QPS <= 0 || r.K != 10 || r.NQ != nq || r.Threads < 1 {
				t.Fatalf("search line %+v", r)
			}
		}
		// Probing every list of a PQ8 index of 32-d clustered data finds the
		// true neighbour in the top 10 for most queries, and more probes
		// never find fewer.
		if *res[1].RecallK < 0.8 || *res[1].RecallK < *res[0].RecallK {
			t.Fatalf("recall@10: %.3f at nprobe 1, %.3f at nprobe 64", *res[0].RecallK, *res[1].RecallK)
		}
		// Without --gt the recalls are left out; the table form works too.
		res = parseSearchJSON(t, shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--nprobe", "8", "--json", "--threads", "1"))
		if len(res) != 1 || res[0].Recall1 != nil || res[0].Threads != 1 {
			t.Fatalf("search without --gt: %+v", res)
		}
		if out := shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--gt", gtF, "--nprobe", "4,16"); !strings.Contains(out, "R@10") {
			t.Errorf("search table lacks R@10:\n%s", out)
		}
		// This binary has no GPU code: --gpu is refused with the way out.
		if _, errOut, code := shelfRun(t, bin, "search", "--index", idx, "--queries", qF, "--gpu"); code != 1 || !strings.Contains(errOut, "-tags cuda") {
			t.Errorf("search --gpu without CUDA: exit %d, stderr %q", code, errOut)
		}
		if _, errOut, code := shelfRun(t, bin, "search", "--index", idx, "--queries", qF, "--gpu", "--gpu-shards", "0"); code != 2 || !strings.Contains(errOut, "--gpu-shards") {
			t.Errorf("search --gpu-shards 0: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("add with ids", func(t *testing.T) {
		extra := synth.Queries(100, d, clusters, 99)
		extraF := filepath.Join(dir, "extra.fvecs")
		idsF := filepath.Join(dir, "extra_ids.npy")
		outF := filepath.Join(dir, "found.ivecs")
		ids := make([]int64, extra.N)
		for i := range ids {
			ids[i] = 5_000_000 + int64(i)*7
		}
		if err := vecio.WriteFvecs(extraF, extra); err != nil {
			t.Fatal(err)
		}
		if err := vecio.WriteNpyInt64(idsF, ids); err != nil {
			t.Fatal(err)
		}
		// Counts that differ are refused, naming both files.
		if err := vecio.WriteNpyInt64(filepath.Join(dir, "short.npy"), ids[:5]); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := shelfRun(t, bin, "add", "--index", idx, "--data", extraF, "--ids", filepath.Join(dir, "short.npy"))
		if code != 1 || !strings.Contains(errOut, "short.npy") || !strings.Contains(errOut, "extra.fvecs") {
			t.Fatalf("add with 5 ids for 100 vectors: exit %d, %q", code, errOut)
		}
		shelfOK(t, bin, "add", "--index", idx, "--data", extraF, "--ids", idsF, "--quiet")
		shelfOK(t, bin, "search", "--index", idx, "--queries", extraF, "--k", "1", "--nprobe", "64", "--out", outF)
		fn, fd, found, err := vecio.ReadInt64(outF)
		if err != nil || fn != extra.N || fd != 1 {
			t.Fatalf("search --out wrote %dx%d (%v)", fn, fd, err)
		}
		hits := 0
		for i, id := range found {
			if id == ids[i] {
				hits++
			}
		}
		// A vector's own code is nearly always its nearest under PQ.
		if hits < extra.N*8/10 {
			t.Fatalf("the added vector is the top hit of %d of %d searches for it", hits, extra.N)
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, errOut, code := shelfRun(t, bin, "build", "--data", baseF, "--index", idx, "--factory", "IVF64,PQ8")
		if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "already holds an index") {
			t.Fatalf("build into an existing index: exit %d, %q", code, errOut)
		}
		q16 := filepath.Join(dir, "q16.fvecs")
		if err := vecio.WriteFvecs(q16, synth.Queries(10, 16, 10, 1)); err != nil {
			t.Fatal(err)
		}
		_, errOut, code = shelfRun(t, bin, "search", "--index", idx, "--queries", q16)
		if code != 1 || !strings.Contains(errOut, "dimension 16") || !strings.Contains(errOut, "dimension 32") {
			t.Fatalf("search with 16-d queries: exit %d, %q", code, errOut)
		}
		_, errOut, code = shelfRun(t, bin, "add", "--index", idx, "--data", q16)
		if code != 1 || !strings.Contains(errOut, "dimension 16") || !strings.Contains(errOut, "dimension 32") {
			t.Fatalf("add of 16-d vectors: exit %d, %q", code, errOut)
		}
		if _, errOut, code = shelfRun(t, bin, "search", "--index", idx, "--queries", qF, "--nprobe", "abc"); code != 2 {
			t.Fatalf("--nprobe abc: exit %d, %q", code, errOut)
		}
		if _, errOut, code = shelfRun(t, bin, "build", "--data", baseF, "--index", filepath.Join(dir, "x"), "--factory", "IVF64,PQ8", "--metric", "hamming"); code != 2 {
			t.Fatalf("--metric hamming: exit %d, %q", code, errOut)
		}
		if _, errOut, code = shelfRun(t, bin, "search", "--index", filepath.Join(dir, "nosuch"), "--queries", qF); code != 1 || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("search of a missing index: exit %d, %q", code, errOut)
		}
		for _, c := range []string{"build", "add", "search", "groundtruth"} {
			if out, _, code := shelfRun(t, bin, c, "--help"); code != 0 || !strings.Contains(out, "Example:") {
				t.Fatalf("%s --help: exit %d\n%s", c, code, out)
			}
		}
	})

	t.Run("cosine and ip", func(t *testing.T) {
		small := synth.Clustered(4000, d, 40, 3)
		smallF := filepath.Join(dir, "small.fvecs")
		if err := vecio.WriteFvecs(smallF, small); err != nil {
			t.Fatal(err)
		}
		for _, metric := range []string{"cosine", "ip"} {
			ix := filepath.Join(dir, "idx-"+metric)
			gt := filepath.Join(dir, "gt-"+metric+".ivecs")
			shelfOK(t, bin, "groundtruth", "--data", smallF, "--queries", qF, "--k", "10", "--metric", metric, "--out", gt)
			shelfOK(t, bin, "build", "--data", smallF, "--index", ix, "--factory", "IVF16,PQ8", "--metric", metric, "--train-size", "2000", "--quiet")
			res := parseSearchJSON(t, shelfOK(t, bin, "search", "--index", ix, "--queries", qF, "--gt", gt, "--nprobe", "16", "--json"))
			if len(res) != 1 || res[0].RecallK == nil || *res[0].RecallK < 0.5 || res[0].QPS <= 0 {
				t.Fatalf("%s: search %+v", metric, res)
			}
		}
		// --headroom: the final compaction leaves room in every slot.
		roomy := filepath.Join(dir, "idx-roomy")
		shelfOK(t, bin, "build", "--data", smallF, "--index", roomy, "--factory", "IVF16,PQ8", "--metric", "ip", "--train-size", "2000", "--headroom", "0.5", "--quiet")
		exact, room := runStatsJSON(t, bin, filepath.Join(dir, "idx-ip")), runStatsJSON(t, bin, roomy)
		if room.NTotal != exact.NTotal || room.FileBytes < exact.FileBytes*5/4 {
			t.Fatalf("build --headroom 0.5: %d vectors in %d bytes; exact slots: %d in %d", room.NTotal, room.FileBytes, exact.NTotal, exact.FileBytes)
		}
		if _, errOut, code := shelfRun(t, bin, "build", "--data", smallF, "--index", filepath.Join(dir, "y"), "--factory", "IVF16,PQ8", "--headroom", "-1"); code != 2 {
			t.Fatalf("--headroom -1: exit %d, %q", code, errOut)
		}
	})
}

// TestBuildBatches runs build and add in-process with batches smaller than
// the file, so that the streaming loop crosses batch boundaries and a
// partial last batch, and checks every row made it in with its id.
func TestBuildBatches(t *testing.T) {
	defer func(old int) { buildBatchRows = old }(buildBatchRows)
	buildBatchRows = 3000
	dir := t.TempDir()
	const n, d = 10000, 16
	base := synth.Clustered(n, d, 50, 5)
	baseF := filepath.Join(dir, "base.fvecs")
	idsF := filepath.Join(dir, "ids.ivecs")
	idx := filepath.Join(dir, "idx")
	if err := vecio.WriteFvecs(baseF, base); err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(1_000_000 + i)
	}
	if err := vecio.WriteIvecs(idsF, n, 1, ids); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"build", "--data", baseF, "--index", idx, "--factory", "IVF16,PQ4", "--train-size", "1000", "--quiet"}, &stdout, &stderr); code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr.String())
	}
	if code := Main([]string{"add", "--index", idx, "--data", baseF, "--ids", idsF, "--quiet"}, &stdout, &stderr); code != 0 {
		t.Fatalf("add: exit %d: %s", code, stderr.String())
	}
	ix, err := ivf.OpenReadOnly(idx)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if got := ix.NTotal(); got != 2*n {
		t.Fatalf("index holds %d vectors, want %d", got, 2*n)
	}
	// Rows 0 and n-1 come from the first and the partial last batch.
	for _, id := range []int64{0, n - 1, 1_000_000, 1_000_000 + n - 1} {
		if _, err := ix.Reconstruct(id); err != nil {
			t.Errorf("id %d: %v", id, err)
		}
	}
}

// TestBuildSample checks the training sample: the asked number of distinct
// rows of the file, the same for the same seed.
func TestBuildSample(t *testing.T) {
	const n, d = 1000, 4
	m := vecio.Matrix{N: n, D: d, Data: make([]float32, n*d)}
	for i := range n {
		m.Data[i*d] = float32(i) // row i is identified by its first value
	}
	path := filepath.Join(t.TempDir(), "m.fvecs")
	if err := vecio.WriteFvecs(path, m); err != nil {
		t.Fatal(err)
	}
	r, err := vecio.OpenFloat32(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, err := buildSample(r, 300, 9)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := buildSample(r, 300, 9)
	seen := map[float32]bool{}
	for i := range 300 {
		v := a[i*d]
		if seen[v] || v < 0 || v >= n || a[i*d+1] != 0 {
			t.Fatalf("sample row %d is %v: repeated or not a row of the file", i, a[i*d:(i+1)*d])
		}
		seen[v] = true
		if b[i*d] != v {
			t.Fatalf("the same seed sampled different rows")
		}
	}
	if all, _ := buildSample(r, n, 9); all[(n-1)*d] != n-1 {
		t.Fatalf("a sample of every row is not the file")
	}
}

// TestHelpHonest checks that help advertises what works: build --help
// lists --headroom, no command's help offers PQ codes other than 8-bit
// ones, and --factory IVF64,PQ8x4 is refused with a usage error saying
// only 8-bit codes are supported, before any training.
func TestHelpHonest(t *testing.T) {
	helpOf := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := Main(append(args, "--help"), &stdout, &stderr); code != 0 {
			t.Fatalf("%v --help: exit %d, %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	if h := helpOf("build"); !strings.Contains(h, "-headroom") || !strings.Contains(h, "[--headroom 0.1]") {
		t.Errorf("build --help does not list --headroom:\n%s", h)
	}
	other := regexp.MustCompile(`PQ[^\s,]*x([^8]|$)|nbits|bits per`)
	for name := range commands {
		if h := helpOf(name); other.MatchString(h) {
			t.Errorf("%s --help offers PQ codes other than 8-bit: %q", name, other.FindString(h))
		}
	}
	for _, name := range []string{"build", "train"} {
		if h := helpOf(name); !strings.Contains(h, "8-bit codes") {
			t.Errorf("%s --help does not say PQ codes are 8-bit:\n%s", name, h)
		}
	}

	dir := t.TempDir()
	data := filepath.Join(dir, "base.fvecs")
	if err := vecio.WriteFvecs(data, synth.Clustered(1000, 32, 10, 1)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"IVF64,PQ8x4", "IVF64,PQ16x4"} {
		for _, c := range []string{"build", "train"} {
			idx := filepath.Join(dir, "idx")
			var stdout, stderr bytes.Buffer
			code := Main([]string{c, "--data", data, "--index", idx, "--factory", f, "--quiet"}, &stdout, &stderr)
			msg := stderr.String()
			if code != 2 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "4-bit PQ codes are not supported, only 8-bit codes") {
				t.Errorf("%s --factory %s: exit %d, stderr %q", c, f, code, msg)
			}
			if _, err := ivf.OpenReadOnly(idx); err == nil {
				t.Errorf("%s --factory %s made an index", c, f)
			}
		}
	}
}
