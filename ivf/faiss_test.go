package ivf

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/faisstest"
	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
)

type faissRow struct {
	NProbe      int     `json:"nprobe"`
	Recall1     float64 `json:"recall1"`
	RecallK     float64 `json:"recallk"`
	InterRecall float64 `json:"inter_recallk"`
	QPS         float64 `json:"qps"`
}

// runFAISS runs bench/faiss_ivfpq.py on fvecs files and parses its rows.
func runFAISS(t *testing.T, args ...string) map[int]faissRow {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "bench", "faiss_ivfpq.py")
	cmd := exec.Command(faisstest.Python, append([]string{script, "--json"}, args...)...)
	cmd.Env = append(os.Environ(), "OMP_WAIT_POLICY=PASSIVE")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("faiss_ivfpq.py: %v\n%s", err, stderr)
	}
	rows := map[int]faissRow{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var r faissRow
		if json.Unmarshal([]byte(sc.Text()), &r) == nil && r.NProbe > 0 {
			rows[r.NProbe] = r
		}
	}
	if len(rows) == 0 {
		t.Fatalf("no result rows from faiss_ivfpq.py:\n%s", out)
	}
	return rows
}

// TestRecallMatchesFAISS builds IVF256,PQ16 on the same seeded clustered
// data (100k x 64, 1,000 queries) with FAISS and with Shelf and requires
// recall@10 (FAISS's 1-recall@10 and the 10-recall@10 of ann-benchmarks)
// within 0.02 of FAISS's at nprobe 1, 8 and 32. Recall@1 of one run on
// 1,000 queries moves by about +-0.015 with the training seed alone (in
// both engines; over 16 seeds and 10k queries the two means agree within
// 0.001, see bench/README.md), so it is held to 0.04.
func TestRecallMatchesFAISS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two 100k-vector indexes; run without -short")
	}
	faisstest.Require(t)
	const n, d, nq, k, nclusters = 100_000, 64, 1000, 10, 400
	base := synth.Clustered(n, d, nclusters, 42)
	queries := synth.Queries(nq, d, nclusters, 42)
	gtIDs, _, err := groundtruth.KNN(base, queries, 100, groundtruth.L2, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gt32 := make([]int32, len(gtIDs))
	for i, v := range gtIDs {
		gt32[i] = int32(v)
	}
	for name, err := range map[string]error{
		"base":    vecio.WriteFvecs(filepath.Join(dir, "base.fvecs"), base),
		"queries": vecio.WriteFvecs(filepath.Join(dir, "queries.fvecs"), queries),
		"gt":      vecio.WriteIvecs(filepath.Join(dir, "gt.ivecs"), nq, 100, gt32),
	} {
		if err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	faiss := runFAISS(t, "--base", filepath.Join(dir, "base.fvecs"), "--queries", filepath.Join(dir, "queries.fvecs"),
		"--gt", filepath.Join(dir, "gt.ivecs"), "--factory", "IVF256,PQ16", "--nprobe", "1,8,32", "--k", fmt.Sprint(k), "--threads", "2",
		"--no-polysemous") // polysemous training only renumbers codes: same results, 4x the time

	ix, err := NewFromFactory("IVF256,PQ16", d, L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(base.Data, n, &TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(base.Data, n); err != nil {
		t.Fatal(err)
	}
	for _, nprobe := range []int{1, 8, 32} {
		_, ids, err := ix.Search(queries.Data, nq, k, nprobe)
		if err != nil {
			t.Fatal(err)
		}
		r1 := groundtruth.Recall(ids, k, gtIDs, 100, nq, 1)
		rk := groundtruth.Recall(ids, k, gtIDs, 100, nq, k)
		ik := groundtruth.IntersectionRecall(ids, k, gtIDs, 100, nq, k)
		f := faiss[nprobe]
		t.Logf("nprobe %2d: recall@1 %.3f (FAISS %.3f), recall@10 %.3f (FAISS %.3f), 10-recall@10 %.3f (FAISS %.3f)",
			nprobe, r1, f.Recall1, rk, f.RecallK, ik, f.InterRecall)
		for _, c := range []struct {
			what      string
			us, faiss float64
			tol       float64
		}{{"recall@1", r1, f.Recall1, 0.04}, {"recall@10", rk, f.RecallK, 0.02}, {"10-recall@10", ik, f.InterRecall, 0.02}} {
			if math.Abs(c.us-c.faiss) > c.tol {
				t.Errorf("nprobe %d: %s %.3f, FAISS %.3f: differs by more than %.2f", nprobe, c.what, c.us, c.faiss, c.tol)
			}
		}
	}
}
