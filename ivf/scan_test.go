package ivf

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateScanGolden = flag.Bool("update-scan", false, "rewrite testdata/scan_golden.txt with this build's search results")

// scanGoldenPath holds, per index configuration, a fingerprint of the
// trained model and lists and a checksum of the results of every search
// of scanSearches: a change to the scan that moves one bit of one result
// shows there. The fingerprint names the machine's kernels in effect: on
// a machine whose training gives another model, the checksums are not
// compared.
const scanGoldenPath = "testdata/scan_golden.txt"

type scanCase struct {
	name     string
	factory  string
	metric   Metric
	residual bool
	precomp  bool // L2 by residual: precomputed tables (else PrecomputedTableMax = 1)
}

// scanCases are every configuration the CPU scan distinguishes: metric,
// residual or not, PQ or Flat, precomputed tables or not.
func scanCases() []scanCase {
	var cs []scanCase
	for _, m := range []Metric{L2, InnerProduct, Cosine} {
		for _, enc := range []struct{ name, factory string }{{"PQ", "IVF16,PQ8"}, {"RQ", "IVF16,RQ3x8"}} {
			for _, res := range []bool{true, false} {
				// RQ codes take the PQ codes' paths (tables summed per
				// byte); the short run (the race detector's, in .ci/run)
				// keeps one RQ case, the full run has them all.
				if enc.name == "RQ" && testing.Short() && (m != L2 || !res) {
					continue
				}
				cs = append(cs, scanCase{fmt.Sprintf("%s/%v/residual=%v", enc.name, m, res), enc.factory, m, res, true})
				if res && m != InnerProduct {
					cs = append(cs, scanCase{fmt.Sprintf("%s/%v/residual=%v/noprecomp", enc.name, m, res), enc.factory, m, res, false})
				}
			}
		}
		cs = append(cs, scanCase{fmt.Sprintf("Flat/%v", m), "IVF16,Flat", m, false, true})
	}
	return cs
}

// scanSearches: two blocks of queries (queryBlock+37) at nprobe 1 (the
// coarse fast path) and larger, k beyond the probed entries (padding),
// every list, nprobe beyond nlist.
var scanSearches = []struct{ nq, k, nprobe int }{
	{queryBlock + 37, 10, 1}, {queryBlock + 37, 10, 5}, {50, 1500, 1}, {50, 1500, 3}, {20, 7, 16}, {20, 3, 100},
}

const scanN, scanD = 3000, 32

func buildScanIndex(t *testing.T, c scanCase) *Index {
	t.Helper()
	ix, err := NewFromFactory(c.factory, scanD, c.metric)
	if err != nil {
		t.Fatal(err)
	}
	ix.Threads = 2
	ix.p.ByResidual = c.residual
	if !c.precomp {
		ix.PrecomputedTableMax = 1
	}
	x := blobs(scanN, scanD, 24, 31)
	if err := ix.Train(x, scanN, &TrainOptions{Seed: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(x, scanN); err != nil {
		t.Fatal(err)
	}
	if got := ix.precomp != nil; got != (c.precomp && c.residual && c.metric != InnerProduct && !ix.p.Flat) {
		t.Fatalf("precomputed tables: %v", got)
	}
	return ix
}

// modelFingerprint hashes what training and adding produced.
func modelFingerprint(t *testing.T, ix *Index) string {
	t.Helper()
	h := sha256.New()
	hashFloats(h, ix.centroids)
	if ix.pq != nil {
		hashFloats(h, ix.pq.Centroids)
	}
	if ix.rq != nil {
		hashFloats(h, ix.rq.Codebooks)
		hashFloats(h, ix.rq.NormLevels)
	}
	snap, err := ix.lists.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	for l := 0; l < ix.p.NList; l++ {
		ids, codes, err := snap.ReadList(l)
		if err != nil {
			t.Fatal(err)
		}
		hashIDs(h, ids)
		h.Write(codes)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func hashFloats(h hash.Hash, v []float32) {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	h.Write(b)
}

func hashIDs(h hash.Hash, v []int64) {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	h.Write(b)
}

func resultSum(dist []float32, ids []int64, lims []int) string {
	h := sha256.New()
	hashFloats(h, dist)
	hashIDs(h, ids)
	for _, l := range lims {
		hashIDs(h, []int64{int64(l)})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// TestScanGolden runs Search, SearchWith (a CPU scanner, and the same
// sharded) and RangeSearch on every configuration of scanCases and checks
// (1) that they agree with each other: SearchWith gives Search's results
// bit for bit (to rounding for L2 by residual without precomputed
// tables, where Search builds tables from residuals), sharding changes
// nothing, and each query's range results are the head of its k-NN
// results; (2) that every result is bit-identical to the one recorded in
// testdata/scan_golden.txt (go test -run TestScanGolden -update-scan
// rewrites it).
func TestScanGolden(t *testing.T) {
	want := readScanGolden(t)
	var got []string
	for _, c := range scanCases() {
		t.Run(c.name, func(t *testing.T) {
			ix := buildScanIndex(t, c)
			model := modelFingerprint(t, ix)
			lines := []string{c.name + "/model " + model}
			compare := want[c.name+"/model"] == model
			if !compare && !*updateScanGolden {
				t.Logf("model %s, recorded %q: another machine's kernels; golden results not compared", model, want[c.name+"/model"])
			}
			record := func(op, sum string) {
				key := c.name + "/" + op
				lines = append(lines, key+" "+sum)
				if compare && !*updateScanGolden && want[key] != sum {
					t.Errorf("%s: results %s, recorded %s", key, sum, want[key])
				}
			}
			sharded, err := NewShardedScanner(&CPUScanner{Threads: 1}, &CPUScanner{Threads: 2}, &CPUScanner{})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range scanSearches {
				q := blobs(s.nq, scanD, 24, uint64(40+s.nq))
				tag := fmt.Sprintf("nq=%d/k=%d/nprobe=%d", s.nq, s.k, s.nprobe)
				sd, si, err := ix.Search(q, s.nq, s.k, s.nprobe)
				if err != nil {
					t.Fatal(err)
				}
				record("Search/"+tag, resultSum(sd, si, nil))
				if s.k == 1500 && !slices.Contains(si, -1) {
					t.Fatalf("%s: no padding", tag)
				}
				wd, wi, err := ix.SearchWith(q, s.nq, s.k, s.nprobe, &CPUScanner{Threads: 2})
				if ix.p.Flat {
					if !errors.Is(err, ErrScannerUnsupported) {
						t.Fatalf("%s: SearchWith on IVF-Flat: err = %v", tag, err)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					record("SearchWith/"+tag, resultSum(wd, wi, nil))
					hd, hi, err := ix.SearchWith(q, s.nq, s.k, s.nprobe, sharded)
					if err != nil {
						t.Fatal(err)
					}
					if !sameBits(hd, wd) || !slices.Equal(hi, wi) {
						t.Fatalf("%s: sharded results differ from one CPU scanner's", tag)
					}
					checkNearlySame(t, tag, ix, sd, si, wd, wi)
				}
			}
			// Range search: radius from the k-NN results, each query's
			// results the head of its k-NN results over every probed entry.
			q := blobs(20, scanD, 24, 77)
			for _, nprobe := range []int{1, 5} {
				kd, ki, err := ix.Search(q, 20, scanN, nprobe)
				if err != nil {
					t.Fatal(err)
				}
				radius := kd[3*scanN+30]
				r, err := ix.RangeSearch(q, 20, radius, nprobe)
				if err != nil {
					t.Fatal(err)
				}
				record(fmt.Sprintf("RangeSearch/nprobe=%d", nprobe), resultSum(r.Dist, r.IDs, r.Lims))
				for qi := 0; qi < 20; qi++ {
					lo, hi := r.Lims[qi], r.Lims[qi+1]
					n := hi - lo
					if !sameBits(r.Dist[lo:hi], kd[qi*scanN:qi*scanN+n]) || !slices.Equal(r.IDs[lo:hi], ki[qi*scanN:qi*scanN+n]) {
						t.Fatalf("nprobe %d query %d: range results are not the head of the k-NN results", nprobe, qi)
					}
					if next := kd[qi*scanN+n]; ki[qi*scanN+n] >= 0 && c.metric != Cosine &&
						(c.metric == L2 && next < radius || c.metric == InnerProduct && next > radius) {
						t.Fatalf("nprobe %d query %d: %v within radius %v left out", nprobe, qi, next, radius)
					}
				}
			}
			got = append(got, lines...)
		})
	}
	if *updateScanGolden && !t.Failed() {
		if err := os.MkdirAll(filepath.Dir(scanGoldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(scanGoldenPath, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkNearlySame checks that SearchWith's results w are Search's s: bit
// for bit, or for L2 by residual without precomputed tables to rounding.
func checkNearlySame(t *testing.T, tag string, ix *Index, sd []float32, si []int64, wd []float32, wi []int64) {
	t.Helper()
	if ix.p.ByResidual && ix.p.Metric != InnerProduct && ix.precomp == nil {
		swaps := 0
		for j := range si {
			if math.Abs(float64(sd[j]-wd[j])) > 1e-4*math.Max(1, math.Abs(float64(sd[j]))) && !(math.IsInf(float64(sd[j]), 0) && sd[j] == wd[j]) {
				t.Fatalf("%s result %d: Search %v, SearchWith %v", tag, j, sd[j], wd[j])
			}
			if si[j] != wi[j] {
				swaps++
			}
		}
		if swaps > len(si)/50 {
			t.Fatalf("%s: %d of %d ids differ", tag, swaps, len(si))
		}
		return
	}
	if !sameBits(sd, wd) || !slices.Equal(si, wi) {
		t.Fatalf("%s: SearchWith's results differ from Search's", tag)
	}
}

func readScanGolden(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	f, err := os.Open(scanGoldenPath)
	if err != nil {
		if *updateScanGolden {
			return m
		}
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			m[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
