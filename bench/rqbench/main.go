package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
	"github.com/shelfdb/shelf/rq"
)

func main() {
	data := flag.String("data", "", "base vectors (.fvecs, .bvecs or .npy): training rows and the index")
	queries := flag.String("queries", "", "query vectors")
	gtFile := flag.String("gt", "", "ground truth of the queries in the base (.ivecs), nearest first")
	layers := flag.Int("layers", 4, "RQ layers of 256 codewords")
	beam := flag.Int("beam", 5, "beam size (FAISS's max_beam_size)")
	trainRows := flag.Int("train", 20000, "rows of the base the quantizers train on (both sides)")
	nlist := flag.Int("nlist", 64, "lists of the IVF index, all probed")
	noFAISS := flag.Bool("no-faiss", false, "skip FAISS's quantizer")
	iters := flag.Int("iters", 0, "k-means iterations per layer of Shelf's quantizer (0: rq's default)")
	refine := flag.Int("refine", 2, "rounds of joint codebook refinement of Shelf's quantizer (2, as IVF,RQ indexes train)")
	flag.Parse()
	check := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "rqbench:", err)
			os.Exit(1)
		}
	}
	if *data == "" || *queries == "" || *gtFile == "" {
		fmt.Fprintln(os.Stderr, "usage: rqbench --data FILE --queries FILE --gt FILE [--layers 4] [--beam 5] [--train 20000] [--nlist 64] [--no-faiss]")
		os.Exit(2)
	}
	base, err := vecio.ReadFloat32(*data)
	check(err)
	q, err := vecio.ReadFloat32(*queries)
	check(err)
	_, kGT, gt, err := vecio.ReadInt64(*gtFile)
	check(err)
	d, nt := base.D, min(*trainRows, base.N)
	train := vecio.Matrix{N: nt, D: d, Data: base.Data[:nt*d]}
	fmt.Printf("%s: %d x %d, %d queries; RQ%dx8, beam %d, trained on %d rows, %d threads\n",
		filepath.Base(*data), base.N, d, q.N, *layers, *beam, nt, runtime.GOMAXPROCS(0))

	// Reconstruction error, ours and FAISS's.
	r, err := rq.New(d, *layers, 8)
	check(err)
	r.BeamSize = *beam
	t0 := time.Now()
	check(r.Train(train.Data, nt, rq.TrainOptions{Seed: 1, Iters: *iters, Refine: *refine}))
	ourTrain := time.Since(t0).Seconds()
	codes := make([]byte, q.N*r.M)
	check(r.EncodeLayers(q.Data, q.N, codes, 0))
	y := make([]float32, q.N*d)
	check(r.Decode(codes, r.M, q.N, y))
	var se float64
	for i, v := range q.Data {
		e := float64(v - y[i])
		se += e * e
	}
	ours := se / float64(q.N)
	fmt.Printf("\n| quantizer | train s | MSE on the queries | vs FAISS |\n|---|---|---|---|\n")
	if *noFAISS {
		fmt.Printf("| Shelf rq.RQ | %.1f | %.6g | |\n", ourTrain, ours)
	} else {
		theirs, theirTrain := faissMSE(train, q, *layers, *beam)
		fmt.Printf("| Shelf rq.RQ | %.1f | %.6g | %.4f |\n", ourTrain, ours, ours/theirs)
		fmt.Printf("| FAISS ResidualQuantizer | %.1f | %.6g | 1 |\n", theirTrain, theirs)
	}

	// The norm byte against exact distances to the decoded vectors.
	ix, err := ivf.NewFromFactory(fmt.Sprintf("IVF%d,RQ%dx8", *nlist, *layers), d, ivf.L2)
	check(err)
	check(ix.Train(train.Data, nt, &ivf.TrainOptions{Seed: 1}))
	_, err = ix.Add(base.Data, base.N)
	check(err)
	const k = 10
	t0 = time.Now()
	_, ids, err := ix.Search(q.Data, q.N, k, *nlist)
	check(err)
	tableS := time.Since(t0).Seconds()
	dec, err := ix.ReconstructN(0, base.N)
	check(err)
	t0 = time.Now()
	exact, _, err := groundtruth.KNN(vecio.Matrix{N: base.N, D: d, Data: dec}, q, k, groundtruth.L2, 0)
	check(err)
	exactS := time.Since(t0).Seconds()
	fmt.Printf("\nIVF%d,RQ%dx8, every list probed, k = %d:\n\n| scoring | R@1 | R@10 | I@10 | s |\n|---|---|---|---|---|\n", *nlist, *layers, k)
	for _, row := range []struct {
		name string
		ids  []int64
		s    float64
	}{{"tables, norm in 1 byte (Shelf, FAISS ST_norm_cqint8)", ids, tableS}, {"exact, decoded vectors (FAISS ST_decompress)", exact, exactS}} {
		fmt.Printf("| %s | %.4f | %.4f | %.4f | %.2f |\n", row.name,
			groundtruth.Recall(row.ids, k, gt, kGT, q.N, 1), groundtruth.Recall(row.ids, k, gt, kGT, q.N, k),
			groundtruth.IntersectionRecall(row.ids, k, gt, kGT, q.N, k), row.s)
	}
}

// faissMSE trains FAISS's quantizer on train through bench/faiss_io.py
// and returns its MSE on q and its training time.
func faissMSE(train, q vecio.Matrix, layers, beam int) (mse, seconds float64) {
	dir, err := os.MkdirTemp("", "rqbench")
	if err == nil {
		defer os.RemoveAll(dir)
		err = vecio.WriteFvecs(filepath.Join(dir, "train.fvecs"), train)
	}
	if err == nil {
		err = vecio.WriteFvecs(filepath.Join(dir, "q.fvecs"), q)
	}
	var spec []byte
	if err == nil {
		spec, err = json.Marshal([]map[string]any{{"op": "rq", "train": "train.fvecs", "M": layers, "beam": beam,
			"encode": "q.fvecs", "codebooks": "cb.npy", "codes": "codes.npy", "out": "rq.json", "threads": 0}})
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "tasks.json"), spec, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rqbench:", err)
		os.Exit(1)
	}
	script, _ := filepath.Abs("bench/faiss_io.py")
	cmd := exec.Command("/usr/bin/python3", script, "tasks.json")
	cmd.Dir, cmd.Stderr = dir, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "rqbench: FAISS (run from the repository root, python3-faiss installed):", err)
		os.Exit(1)
	}
	var res struct {
		MSE    float64
		TrainS float64 `json:"train_s"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "rq.json"))
	if err == nil {
		err = json.Unmarshal(b, &res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rqbench:", err)
		os.Exit(1)
	}
	return res.MSE, res.TrainS
}
