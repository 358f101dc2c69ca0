package ivf

import (
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/vecmath"
)

func TestParseFactoryRQ(t *testing.T) {
	for _, f := range []string{"IVF64,RQ4x8", "IVF64,RQ4", "IVF64,RQ4x8_Ncqint8"} {
		p, err := ParseFactory(f, 30, L2)
		if err != nil || !p.RQ || p.M != 4 || p.Nbits != 8 || p.CodeSize() != 5 || p.Factory() != "IVF64,RQ4x8" {
			t.Errorf("%s: %+v, %v", f, p, err)
		}
	}
	for f, want := range map[string]string{
		"IVF64,RQ4x4":        "only 8-bit layers",
		"IVF64,RQ4x8_Nfloat": "_Nfloat",
		"IVF64,RQ0x8":        "bad RQ layer count",
		"IVF64,RQ65x8":       "1 to 64 layers",
		"IVF64,RQx8":         "bad RQ layer count",
	} {
		if _, err := ParseFactory(f, 30, L2); !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", f, err, want)
		}
	}
}

// TestRQIndex: an IVF,RQ index scores each code as ||q - c||^2 +
// level(||r||^2) - 2<q - c, r> for L2 (r the decoded residual, level its
// quantized squared norm) and <q, c + r> for inner product, finds the
// true neighbours about as well as IVF,PQ of one byte more, and keeps
// its results through a directory and a reopen.
func TestRQIndex(t *testing.T) {
	const n, d, nq, k = 6000, 32, 40, 10
	x := blobs(n, d, 30, 41)
	q := blobs(nq, d, 30, 42)
	metrics := []Metric{L2, InnerProduct, Cosine}
	if testing.Short() {
		metrics = metrics[:1] // the race detector's run; the full run has all
	}
	for _, metric := range metrics {
		ix := trainedIndex(t, "IVF16,RQ4x8", metric, x, n, d, 3)
		dist, ids, err := ix.Search(q, nq, k, 4)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := ix.lists.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		where, err := ix.directMap(snap)
		snap.Release()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := ix.ReconstructBatch(ids)
		if err != nil {
			t.Fatal(err)
		}
		qs, _ := ix.checkVectors(q, nq)
		r := make([]float32, d)
		for i, id := range ids {
			l := int(where[id].list)
			c := ix.centroids[l*d : (l+1)*d]
			qv := qs[(i/k)*d : (i/k+1)*d]
			for j := range r {
				r[j] = rec[i*d+j] - c[j]
			}
			var want float32
			if metric == InnerProduct {
				want = vecmath.Dot(qv, c) + vecmath.Dot(qv, r)
			} else {
				level := ix.rq.NormLevels[ix.rq.NormCode(vecmath.Dot(r, r))]
				qc := make([]float32, d)
				for j := range qc {
					qc[j] = qv[j] - c[j]
				}
				want = vecmath.L2Sq(qv, c) + level - 2*vecmath.Dot(qc, r)
				if metric == Cosine {
					want = 1 - want/2
				}
			}
			if math.Abs(float64(dist[i]-want)) > 1e-3*math.Max(1, math.Abs(float64(want))) {
				t.Fatalf("%v: result %d (id %d, list %d): distance %v, recomputed %v", metric, i, id, l, dist[i], want)
			}
		}
		if metric != L2 {
			continue
		}
		gt := bruteForce(x, n, q, nq, d, k, L2)
		_, all, _ := ix.Search(q, nq, k, 16)
		rRQ := recallAt(all, k, gt)
		pq, _ := NewFromFactory("IVF16,PQ4", d, L2)
		if err := pq.Train(x, n, &TrainOptions{Seed: 3}); err != nil {
			t.Fatal(err)
		}
		pq.Add(x, n)
		_, pids, _ := pq.Search(q, nq, k, 16)
		rPQ := recallAt(pids, k, gt)
		t.Logf("R@1 probing every list: IVF16,RQ4x8 (5 bytes) %.3f, IVF16,PQ4 (4 bytes) %.3f", rRQ, rPQ)
		if rRQ < rPQ {
			t.Errorf("RQ4x8 recall %.3f below PQ4's %.3f", rRQ, rPQ)
		}
		dir := filepath.Join(t.TempDir(), "rq")
		if err := ix.ToDisk(dir); err != nil {
			t.Fatal(err)
		}
		ix.Close()
		ro, err := OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		d2, i2, err := ro.Search(q, nq, k, 4)
		ro.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, i2) || !sameBits(dist, d2) {
			t.Fatal("reopened RQ index gives different results")
		}
	}
}

func TestNewTrainedRQ(t *testing.T) {
	const n, d = 3000, 16
	x := blobs(n, d, 10, 51)
	ix, _ := NewFromFactory("IVF8,RQ2x8", d, L2)
	if err := ix.Train(x, n, &TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewTrainedRQ(ix.p, ix.centroids, ix.rq); err != nil {
		t.Fatal(err)
	}
	if _, err := NewTrained(ix.p, ix.centroids, nil); !errors.Is(err, ErrParams) {
		t.Errorf("NewTrained of an RQ index: %v", err)
	}
	p := ix.p
	p.M = 3
	if _, err := NewTrainedRQ(p, ix.centroids, ix.rq); !errors.Is(err, ErrParams) {
		t.Errorf("3 layers with a 2-layer RQ: %v", err)
	}
	other, _ := NewFromFactory("IVF8,RQ2x8", d, L2)
	if err := other.Train(x, n, &TrainOptions{Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if err := ix.SameTraining(other); !errors.Is(err, ErrIncompatible) {
		t.Errorf("two RQ trainings: %v", err)
	}
}
