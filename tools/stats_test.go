package tools

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/ivf"
)

const statsDim = 32

// buildFragmentedIndex makes a small IVF32,PQ8 index on disk whose store
// has free space: vectors are added, a range is removed and more are
// added, so lists grow out of their slots.
func buildFragmentedIndex(t *testing.T) (dir string, ntotal int64) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "idx")
	base := synth.Clustered(12_000, statsDim, 40, 3)
	ix, err := ivf.NewFromFactory("IVF32,PQ8", statsDim, ivf.L2)
	if err != nil {
		t.Fatal(err)
	}
	first := 10_000 * statsDim
	if err := ix.Train(base.Data[:first], 10_000, &ivf.TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ix.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(base.Data[:first], 10_000); err != nil {
		t.Fatal(err)
	}
	removed, err := ix.RemoveRange(2_000, 5_000)
	if err != nil || removed != 3_000 {
		t.Fatalf("RemoveRange: %d, %v", removed, err)
	}
	if _, err := ix.Add(base.Data[first:], 2_000); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, 10_000 - 3_000 + 2_000
}

func runStatsJSON(t *testing.T, bin, dir string) statsReport {
	t.Helper()
	out, err := exec.Command(bin, "stats", "--index", dir, "--json").Output()
	if err != nil {
		t.Fatalf("shelf stats --json: %v\n%s", err, out)
	}
	var r statsReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("stats --json output: %v\n%s", err, out)
	}
	return r
}

func searchIDs(t *testing.T, dir string) []int64 {
	t.Helper()
	ix, err := ivf.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	q := synth.Queries(50, statsDim, 40, 3)
	_, ids, err := ix.Search(q.Data, q.N, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestStatsBinary runs the real binary; one build serves all subtests.
func TestStatsBinary(t *testing.T) {
	bin := buildShelf(t)
	t.Run("StatsAndCompact", func(t *testing.T) { testStatsAndCompact(t, bin) })
	t.Run("IdenticalVectors", func(t *testing.T) { testStatsIdenticalVectors(t, bin) })
	t.Run("NotAnIndex", func(t *testing.T) { testStatsNotAnIndex(t, bin) })
}

func testStatsAndCompact(t *testing.T, bin string) {
	dir, ntotal := buildFragmentedIndex(t)

	r := runStatsJSON(t, bin, dir)
	if r.NTotal != ntotal || r.NList != 32 || r.Factory != "IVF32,PQ8" || r.CodeSize != 8 {
		t.Fatalf("stats: ntotal %d nlist %d factory %s code size %d, want %d 32 IVF32,PQ8 8", r.NTotal, r.NList, r.Factory, r.CodeSize, ntotal)
	}
	lists := 0
	for _, h := range r.Histogram {
		lists += h.Lists
	}
	if lists != r.NList {
		t.Errorf("histogram counts %d lists, index has %d", lists, r.NList)
	}
	if r.PQ == nil || r.PQ.M != 8 || len(r.PQ.Utilization) != 8 {
		t.Fatalf("stats: PQ diagnostics %+v", r.PQ)
	}
	for j := range r.PQ.Utilization {
		if u, h := r.PQ.Utilization[j], r.PQ.EntropyBits[j]; !(u > 0 && u <= 1) || !(h > 0 && h <= 8) {
			t.Errorf("sub-quantizer %d: utilization %g, entropy %g bits", j, u, h)
		}
	}
	if c := r.PQ.CollisionRate; !(c >= 0 && c <= 1) || r.PQ.CollisionVectors != ntotal || r.PQ.CollisionSampled {
		t.Errorf("collision rate %g over %d vectors (sampled %v)", c, r.PQ.CollisionVectors, r.PQ.CollisionSampled)
	}
	if r.FreeBytes <= 0 {
		t.Fatalf("remove + add left no free space to compact: %+v", r)
	}

	out, err := exec.Command(bin, "stats", "--index", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "collision rate") || !strings.Contains(string(out), "#") {
		t.Fatalf("shelf stats: %v\n%s", err, out)
	}

	before := searchIDs(t, dir)
	out, err = exec.Command(bin, "compact", "--index", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "saved") {
		t.Fatalf("shelf compact: %v\n%s", err, out)
	}
	a := runStatsJSON(t, bin, dir)
	if a.FileBytes >= r.FileBytes || a.FreeBytes != 0 || a.NTotal != ntotal {
		t.Fatalf("after compact: file %d bytes (before %d), free %d, ntotal %d", a.FileBytes, r.FileBytes, a.FreeBytes, a.NTotal)
	}
	if after := searchIDs(t, dir); !slices.Equal(before, after) {
		t.Fatal("search results differ after compaction")
	}

	// Compacting with headroom leaves room in every slot: the file grows
	// by about that share, and the add below appends in place.
	out, err = exec.Command(bin, "compact", "--index", dir, "--headroom", "0.5").CombinedOutput()
	if err != nil {
		t.Fatalf("shelf compact --headroom: %v\n%s", err, out)
	}
	h := runStatsJSON(t, bin, dir)
	if a.FullLists != a.NList-a.EmptyLists || h.FullLists != 0 {
		t.Fatalf("full lists: %d of %d non-empty after an exact compaction, %d with headroom", a.FullLists, a.NList-a.EmptyLists, h.FullLists)
	}
	if h.FileBytes < a.FileBytes*5/4 || h.NTotal != ntotal || h.FreeBytes != 0 {
		t.Fatalf("compaction with headroom 0.5: file %d bytes (exact: %d), ntotal %d, free %d", h.FileBytes, a.FileBytes, h.NTotal, h.FreeBytes)
	}
	if code := Main([]string{"compact", "--index", dir, "--headroom", "-1"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("compact --headroom -1: exit %d, want a usage error", code)
	}

	// The compacted index still takes adds and finds them.
	ix, err := ivf.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := synth.Queries(1, statsDim, 40, 99)
	id, err := ix.Add(v.Data, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, ids, err := ix.Search(v.Data, 1, 1, 32)
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	if err != nil || ids[0] != id {
		t.Fatalf("search for a vector added after compaction: %v, %v (want id %d)", ids, err, id)
	}
	if g := runStatsJSON(t, bin, dir); g.FileBytes != h.FileBytes {
		t.Fatalf("an add into slots with headroom grew the file from %d to %d bytes", h.FileBytes, g.FileBytes)
	}
}

// Every vector identical: one code repeated, so each sub-quantizer uses
// exactly one centroid, the entropy is 0 and every vector collides.
func testStatsIdenticalVectors(t *testing.T, bin string) {
	r := rand.New(rand.NewPCG(5, 6))
	train := make([]float32, 2_000*statsDim)
	for i := range train {
		train[i] = r.Float32()
	}
	ix, err := ivf.NewFromFactory("IVF32,PQ8", statsDim, ivf.L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(train, 2_000, nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "same")
	if err := ix.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	same := make([]float32, 0, 500*statsDim)
	for range 500 {
		same = append(same, train[:statsDim]...)
	}
	if _, err := ix.Add(same, 500); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	s := runStatsJSON(t, bin, dir)
	if s.NTotal != 500 || s.PQ == nil {
		t.Fatalf("stats: %+v", s)
	}
	if s.PQ.CollisionRate != 1 {
		t.Errorf("collision rate %g, want 1", s.PQ.CollisionRate)
	}
	for j, u := range s.PQ.Utilization {
		if u != 1.0/256 || s.PQ.EntropyBits[j] != 0 {
			t.Errorf("sub-quantizer %d: utilization %g (want 1/256), entropy %g (want 0)", j, u, s.PQ.EntropyBits[j])
		}
	}

	// Sampling: with a limit of 100 codes, every 5th vector is examined.
	ro, err := ivf.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	sr, err := statsCollect(ro, dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !sr.PQ.CollisionSampled || sr.PQ.CollisionVectors != 100 || sr.PQ.CollisionRate != 1 || math.Abs(sr.PQ.MeanUtilization-1.0/256) > 1e-12 {
		t.Errorf("sampled stats: %+v", sr.PQ)
	}
}

func testStatsNotAnIndex(t *testing.T, bin string) {
	dir := t.TempDir()
	cmd := exec.Command(bin, "stats", "--index", dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("stats of a non-index: %v, want exit code 1", err)
	}
	msg := stderr.String()
	if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, dir) {
		t.Fatalf("stderr %q: want one line naming %s", msg, dir)
	}
}

// An IVF,Flat index has no PQ codes: stats reports the store and says the
// PQ part was skipped instead of reading raw floats as codes.
func TestStatsFlatSkipsPQ(t *testing.T) {
	base := synth.Clustered(1_000, statsDim, 10, 4)
	ix, err := ivf.NewFromFactory("IVF8,Flat", statsDim, ivf.L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(base.Data, base.N, nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "flat")
	if err := ix.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if _, err := ix.Add(base.Data, base.N); err != nil {
		t.Fatal(err)
	}
	r, err := statsCollect(ix, dir, collisionSampleLimit)
	if err != nil {
		t.Fatal(err)
	}
	if r.PQ != nil || r.PQSkipped == "" || r.NTotal != 1_000 || r.Factory != "IVF8,Flat" {
		t.Fatalf("flat stats: %+v", r)
	}
	var sb strings.Builder
	statsPrint(&sb, r)
	if !strings.Contains(sb.String(), "PQ diagnostics skipped") {
		t.Fatalf("text report of a flat index:\n%s", sb.String())
	}
}
