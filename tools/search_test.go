package tools

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// searchFixture writes a small IVF64,PQ8 index of clustered data, its
// queries and their exact 20 nearest neighbours, and returns the paths.
func searchFixture(t *testing.T, dir string) (idx, qF, gtF string, queries vecio.Matrix, gt []int64) {
	t.Helper()
	const n, d, nq, clusters = 8000, 32, 150, 60
	base := synth.Clustered(n, d, clusters, 11)
	queries = synth.Queries(nq, d, clusters, 11)
	idx, qF, gtF = filepath.Join(dir, "idx"), filepath.Join(dir, "q.fvecs"), filepath.Join(dir, "gt.ivecs")
	if err := vecio.WriteFvecs(qF, queries); err != nil {
		t.Fatal(err)
	}
	gt, _, err := groundtruth.KNN(base, queries, 20, groundtruth.L2, 0)
	if err != nil {
		t.Fatal(err)
	}
	gt32 := make([]int32, len(gt))
	for i, id := range gt {
		gt32[i] = int32(id)
	}
	if err := vecio.WriteIvecs(gtF, nq, 20, gt32); err != nil {
		t.Fatal(err)
	}
	ix, err := ivf.NewFromFactory("IVF64,PQ8", d, ivf.L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(base.Data, n, &ivf.TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(base.Data, n); err != nil {
		t.Fatal(err)
	}
	if err := ix.ToDisk(idx); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	return idx, qF, gtF, queries, gt
}

// searchJSONLine is a line of search --json with the fields this test reads.
type searchJSONLine struct {
	Index         string   `json:"index"`
	NProbe        int      `json:"nprobe"`
	K             int      `json:"k"`
	Recall1       *float64 `json:"recall1"`
	RecallK       *float64 `json:"recallk"`
	IntersectionK *float64 `json:"intersectionk"`
}

// TestSearchOutput checks what search writes besides QPS: the distances
// beside the ids of --out, the intersection recall beside R@1/R@k (as
// numbers and in the legend), and the index named in --json, which plot
// uses for the curve's name.
func TestSearchOutput(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	idx, qF, gtF, queries, gt := searchFixture(t, dir)
	const k, kGT = 10, 20

	// --out: ids in .ivecs, distances in the .fvecs beside it, both what
	// the index's own Search returns.
	outF := filepath.Join(dir, "res.ivecs")
	jsonOut := shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--gt", gtF, "--k", "10", "--nprobe", "2", "--json", "--out", outF)
	fn, fk, found, err := vecio.ReadInt64(outF)
	if err != nil || fn != queries.N || fk != k {
		t.Fatalf("--out ids: %dx%d, %v", fn, fk, err)
	}
	dm, err := vecio.ReadFloat32(filepath.Join(dir, "res.fvecs"))
	if err != nil || dm.N != queries.N || dm.D != k {
		t.Fatalf("--out distances: %dx%d, %v", dm.N, dm.D, err)
	}
	ix, err := ivf.OpenReadOnly(idx)
	if err != nil {
		t.Fatal(err)
	}
	wantD, wantI, err := ix.Search(queries.Data, queries.N, k, 2)
	ix.Close()
	if err != nil {
		t.Fatal(err)
	}
	for i := range wantI {
		if found[i] != wantI[i] || math.Abs(float64(dm.Data[i]-wantD[i])) > 1e-5*max(1, math.Abs(float64(wantD[i]))) {
			t.Fatalf("result %d (query %d): id %d distance %g, Search gives id %d distance %g", i, i/k, found[i], dm.Data[i], wantI[i], wantD[i])
		}
		if i%k > 0 && dm.Data[i] < dm.Data[i-1] {
			t.Fatalf("query %d: distances not best first: %v", i/k, dm.Data[i/k*k:i/k*k+k])
		}
	}

	// --json: the index, R@1, R@k and the intersection recall, each the
	// measure it says.
	var line searchJSONLine
	if err := json.Unmarshal([]byte(strings.TrimSpace(jsonOut)), &line); err != nil {
		t.Fatalf("search --json: %v\n%s", err, jsonOut)
	}
	if line.Index != idx || line.Recall1 == nil || line.RecallK == nil || line.IntersectionK == nil {
		t.Fatalf("search --json line %s", jsonOut)
	}
	var first1, firstK, inter float64
	for q := range queries.N {
		res, truth := found[q*k:q*k+k], gt[q*kGT:q*kGT+k]
		for j, id := range res {
			if id == truth[0] {
				firstK++
				if j == 0 {
					first1++
				}
			}
			for _, tid := range truth {
				if id == tid {
					inter++
				}
			}
		}
	}
	nq := float64(queries.N)
	first1, firstK, inter = first1/nq, firstK/nq, inter/(nq*k)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"recall1", *line.Recall1, first1}, {"recallk", *line.RecallK, firstK}, {"intersectionk", *line.IntersectionK, inter}} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// At nprobe 2 of 64 lists the two measures differ: the true nearest
	// is found more often than the whole true top 10.
	if !(inter < firstK) {
		t.Errorf("intersection recall %v not below R@10 %v: the test does not tell them apart", inter, firstK)
	}

	// The table: the I@10 column and a legend that says which is which.
	table := shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--gt", gtF, "--k", "10", "--nprobe", "2,8")
	t.Logf("search table:\n%s", table)
	for _, s := range []string{"R@1", "R@10", "I@10", "R@R: share of queries whose true nearest neighbour", "I@10: intersection recall"} {
		if !strings.Contains(table, s) {
			t.Errorf("search table lacks %q:\n%s", s, table)
		}
	}
	// A ground truth of 20 columns and k 30: R@30 still, I@30 not (it
	// would need the true 30 nearest), and the legend says so.
	table = shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--gt", gtF, "--k", "30", "--nprobe", "2")
	header := strings.Split(table, "\n")[2]
	if strings.Contains(header, "I@30") || !strings.Contains(header, "R@30") || !strings.Contains(table, "I@30 (intersection recall) not shown") {
		t.Errorf("search --k 30 with 20 true neighbours:\n%s", table)
	}
	jsonOut = shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--gt", gtF, "--k", "30", "--nprobe", "2", "--json")
	line = searchJSONLine{}
	if err := json.Unmarshal([]byte(strings.TrimSpace(jsonOut)), &line); err != nil || line.IntersectionK != nil || line.RecallK == nil {
		t.Errorf("search --json --k 30 with 20 true neighbours: %s", jsonOut)
	}

	// shelf plot names the curve after the index of the lines.
	results := filepath.Join(dir, "run.jsonl")
	if err := os.WriteFile(results, []byte(shelfOK(t, bin, "search", "--index", idx, "--queries", qF, "--gt", gtF, "--nprobe", "1,4,16", "--json")), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := readPlotCurve(results, "intersectionk")
	if err != nil || c.name != idx || len(c.x) != 3 || c.label != "intersection recall@10" {
		t.Fatalf("plot of search --json: %+v, %v; want a curve named %s", c, err, idx)
	}
	shelfOK(t, bin, "plot", "--results", results, "--recall", "intersectionk", "--out", filepath.Join(dir, "p.png"))

	// --out never writes the distances over an input.
	if _, errOut, code := shelfRun(t, bin, "search", "--index", idx, "--queries", qF, "--out", filepath.Join(dir, "q.ivecs")); code != 2 || !strings.Contains(errOut, "over "+qF) {
		t.Errorf("--out q.ivecs beside --queries q.fvecs: exit %d, %q", code, errOut)
	}
}
