package tools

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/ivf"
)

// TestRangeSearchBinary runs range-search through the binary and checks
// its counts and its --out file against the index's RangeSearch, and
// against Search: with every list probed, each of a query's k nearest
// that lies within the radius is among its range results.
func TestRangeSearchBinary(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	idx, qF, _, queries, _ := searchFixture(t, dir)
	const k, nprobe = 10, 64
	ix, err := ivf.OpenReadOnly(idx)
	if err != nil {
		t.Fatal(err)
	}
	kd, ki, err := ix.Search(queries.Data, queries.N, k, nprobe)
	if err != nil {
		t.Fatal(err)
	}
	// The median 5th-nearest distance: some queries find many, some few.
	fifth := make([]float32, queries.N)
	for qi := range fifth {
		fifth[qi] = kd[qi*k+4]
	}
	slices.Sort(fifth)
	radius := fifth[len(fifth)/2]
	rs := strconv.FormatFloat(float64(radius), 'g', -1, 32)
	want, err := ix.RangeSearch(queries.Data, queries.N, radius, nprobe)
	ix.Close()
	if err != nil {
		t.Fatal(err)
	}

	outF := filepath.Join(dir, "range.tsv")
	var res rangeResult
	js := shelfOK(t, bin, "range-search", "--index", idx, "--queries", qF, "--radius", rs, "--nprobe", "64", "--out", outF, "--json")
	if err := json.Unmarshal([]byte(js), &res); err != nil {
		t.Fatalf("range-search --json: %v\n%s", err, js)
	}
	if res.Index != idx || res.NQ != queries.N || res.Results != len(want.IDs) || len(res.Counts) != queries.N || res.Results == 0 {
		t.Fatalf("range-search --json: %s (want %d results)", js, len(want.IDs))
	}
	b, err := os.ReadFile(outF)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(want.IDs) {
		t.Fatalf("%s has %d lines, want %d", outF, len(lines), len(want.IDs))
	}
	type hit struct {
		id   int64
		dist float32
	}
	got := make([][]hit, queries.N)
	for i, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Fatalf("line %d: %q", i+1, l)
		}
		qi, e1 := strconv.Atoi(f[0])
		id, e2 := strconv.ParseInt(f[1], 10, 64)
		d, e3 := strconv.ParseFloat(f[2], 32)
		if e1 != nil || e2 != nil || e3 != nil || qi < 0 || qi >= queries.N {
			t.Fatalf("line %d: %q", i+1, l)
		}
		got[qi] = append(got[qi], hit{id, float32(d)})
	}
	for qi := range got {
		w := want.Lims[qi+1] - want.Lims[qi]
		if res.Counts[qi] != w || len(got[qi]) != w {
			t.Fatalf("query %d: count %d, %d lines, RangeSearch finds %d", qi, res.Counts[qi], len(got[qi]), w)
		}
		ids := map[int64]bool{}
		for j, h := range got[qi] {
			if h.id != want.IDs[want.Lims[qi]+j] || h.dist != want.Dist[want.Lims[qi]+j] || !(h.dist < radius) || (j > 0 && h.dist < got[qi][j-1].dist) {
				t.Fatalf("query %d result %d: %+v; RangeSearch: id %d distance %g (radius %g, best first)", qi, j, h, want.IDs[want.Lims[qi]+j], want.Dist[want.Lims[qi]+j], radius)
			}
			ids[h.id] = true
		}
		for j := range k {
			if kd[qi*k+j] < radius && !ids[ki[qi*k+j]] {
				t.Fatalf("query %d: its %d-th nearest, id %d at %g, is within %g but not a range result", qi, j+1, ki[qi*k+j], kd[qi*k+j], radius)
			}
		}
	}

	// The summary; a bound on the results; errors.
	out := shelfOK(t, bin, "range-search", "--index", idx, "--queries", qF, "--radius", rs)
	if !strings.Contains(out, "squared L2 distance below "+rs) || !strings.Contains(out, "per query min") {
		t.Errorf("range-search summary:\n%s", out)
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--radius", rs, "--nprobe", "64", "--max-results", "5"}, "--max-results 5"},
		{[]string{"--radius", "nan"}, "--radius"},
		{[]string{"--radius", "1e39"}, "--radius"},
		{[]string{}, "--radius"},
		{[]string{"--radius", rs, "--nprobe", "0"}, "--nprobe"},
		{[]string{"--radius", rs, "--out", qF}, "overwrite"},
	} {
		args := append([]string{"range-search", "--index", idx, "--queries", qF}, c.args...)
		if _, errOut, code := shelfRun(t, bin, args...); code != 2 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, c.msg) {
			t.Errorf("shelf %v: exit %d, %q; want a usage error with %q", c.args, code, errOut, c.msg)
		}
	}
	if out, _, code := shelfRun(t, bin, "range-search", "--help"); code != 0 || !strings.Contains(out, "Example:") {
		t.Errorf("range-search --help: exit %d\n%s", code, out)
	}
}
