package rq

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/shelfdb/shelf/internal/faisstest"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/internal/vecmath"
)

// FAISS's ResidualQuantizer and ours on the same data: our training's
// reconstruction error within 2% of FAISS's at the same layers and beam
// (FAISS's default training, progressive-dimension k-means), and, given
// FAISS's codebooks, the same codes as FAISS's beam search.
func TestAgainstFAISS(t *testing.T) {
	faisstest.Require(t)
	const n, ne, d, m, beam = 12000, 2000, 32, 4, 5
	dir := t.TempDir()
	train := synth.Clustered(n, d, 50, 11)
	enc := synth.Queries(ne, d, 50, 11)
	for name, mat := range map[string]vecio.Matrix{"train.fvecs": train, "enc.fvecs": enc} {
		if err := vecio.WriteFvecs(filepath.Join(dir, name), mat); err != nil {
			t.Fatal(err)
		}
	}
	faisstest.RunIO(t, dir, map[string]any{
		"op": "rq", "train": "train.fvecs", "M": m, "beam": beam, "encode": "enc.fvecs",
		"codebooks": "cb.npy", "codes": "codes.npy", "out": "rq.json",
	})
	var res struct{ MSE float64 }
	b, err := os.ReadFile(filepath.Join(dir, "rq.json"))
	if err == nil {
		err = json.Unmarshal(b, &res)
	}
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(d, m, 8)
	if err != nil {
		t.Fatal(err)
	}
	q.BeamSize = beam
	if err := q.Train(train.Data, n, TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	ours := mse(q, enc.Data, ne)
	t.Logf("reconstruction MSE: ours %.5g, FAISS %.5g (ratio %.4f)", ours, res.MSE, ours/res.MSE)
	if ours > 1.02*res.MSE {
		t.Errorf("MSE %.5g, more than 2%% above FAISS's %.5g", ours, res.MSE)
	}

	cb, err := vecio.ReadFloat32(filepath.Join(dir, "cb.npy"))
	if err != nil {
		t.Fatal(err)
	}
	fc, err := vecio.ReadFloat32(filepath.Join(dir, "codes.npy"))
	if err != nil {
		t.Fatal(err)
	}
	fq, err := FromCodebooks(d, m, cb.Data, nil, beam)
	if err != nil {
		t.Fatal(err)
	}
	codes := make([]byte, ne*m)
	if err := fq.EncodeLayers(enc.Data, ne, codes, 0); err != nil {
		t.Fatal(err)
	}
	// A code may differ only where FAISS's and ours are equally good to
	// float32 rounding (the two sum distances in different orders).
	y1, y2 := make([]float32, d), make([]float32, d)
	diff := 0
	for i := range ne {
		theirs := make([]byte, m)
		for j := range theirs {
			theirs[j] = byte(fc.Data[i*m+j])
		}
		if string(theirs) == string(codes[i*m:(i+1)*m]) {
			continue
		}
		diff++
		xi := enc.Row(i)
		fq.decodeLayers(theirs, y1)
		fq.decodeLayers(codes[i*m:(i+1)*m], y2)
		a, b := vecmath.L2Sq(xi, y1), vecmath.L2Sq(xi, y2)
		if b > a*(1+1e-5) {
			t.Errorf("vector %d: code %v at %g, FAISS's %v at %g", i, codes[i*m:(i+1)*m], b, theirs, a)
		}
	}
	t.Logf("given FAISS's codebooks: %d of %d codes differ from FAISS's, none worse", diff, ne)
	if diff > ne/1000 {
		t.Errorf("%d of %d codes differ from FAISS's", diff, ne)
	}
}
