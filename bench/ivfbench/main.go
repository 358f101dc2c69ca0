package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

type row struct {
	Engine      string  `json:"engine"`
	NProbe      int     `json:"nprobe"`
	Threads     int     `json:"threads"`
	Recall1     float64 `json:"recall1"`
	RecallK     float64 `json:"recallk"`
	InterRecall float64 `json:"inter_recallk"`
	QPS         float64 `json:"qps"`
	TrainS      float64 `json:"train_s"`
	AddS        float64 `json:"add_s"`
}

func main() {
	n := flag.Int("n", 1_000_000, "base vectors")
	d := flag.Int("d", 128, "dimension")
	nq := flag.Int("nq", 5000, "queries")
	nclusters := flag.Int("clusters", 2000, "clusters of the synthetic mixture")
	factory := flag.String("factory", "IVF1024,PQ16", "index factory string")
	nprobes := flag.String("nprobe", "1,8,32", "nprobe values")
	threadList := flag.String("threads", "1,2", "thread counts for search")
	work := flag.String("work", "/tmp/shelf-ivfbench", "directory for the data files (reused when present)")
	faissPath := flag.String("faiss-path", "/tmp/faiss-opt/python", "PYTHONPATH of an optimized FAISS build (ignored if missing)")
	noFAISS := flag.Bool("no-faiss", false, "skip FAISS")
	reps := flag.Int("reps", 3, "search repetitions (best QPS is kept)")
	flag.Parse()
	k := 10
	check := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "ivfbench:", err)
			os.Exit(1)
		}
	}
	tag := fmt.Sprintf("n%d-d%d-q%d-c%d", *n, *d, *nq, *nclusters)
	dir := filepath.Join(*work, tag)
	check(os.MkdirAll(dir, 0o755))
	basePath, qPath, gtPath := filepath.Join(dir, "base.fvecs"), filepath.Join(dir, "queries.fvecs"), filepath.Join(dir, "gt.ivecs")
	var base, queries vecio.Matrix
	var gt []int64
	if _, err := os.Stat(gtPath); err == nil {
		var err error
		base, err = vecio.ReadFloat32(basePath)
		check(err)
		queries, err = vecio.ReadFloat32(qPath)
		check(err)
		_, _, g32, err := vecio.ReadInt32(gtPath)
		check(err)
		for _, v := range g32 {
			gt = append(gt, int64(v))
		}
	} else {
		t0 := time.Now()
		base = synth.Clustered(*n, *d, *nclusters, 1)
		queries = synth.Queries(*nq, *d, *nclusters, 1)
		ids, _, err := groundtruth.KNN(base, queries, 100, groundtruth.L2, 0)
		check(err)
		gt = ids
		g32 := make([]int32, len(ids))
		for i, v := range ids {
			g32[i] = int32(v)
		}
		check(vecio.WriteFvecs(basePath, base))
		check(vecio.WriteFvecs(qPath, queries))
		check(vecio.WriteIvecs(gtPath, *nq, 100, g32))
		fmt.Fprintf(os.Stderr, "data and ground truth: %.1f s\n", time.Since(t0).Seconds())
	}
	var probes, threads []int
	for _, s := range strings.Split(*nprobes, ",") {
		v, err := strconv.Atoi(s)
		check(err)
		probes = append(probes, v)
	}
	for _, s := range strings.Split(*threadList, ",") {
		v, err := strconv.Atoi(s)
		check(err)
		threads = append(threads, v)
	}

	// Shelf.
	ix, err := ivf.NewFromFactory(*factory, *d, ivf.L2)
	check(err)
	t0 := time.Now()
	check(ix.Train(base.Data, base.N, &ivf.TrainOptions{Seed: 1}))
	trainS := time.Since(t0).Seconds()
	t0 = time.Now()
	_, err = ix.Add(base.Data, base.N)
	check(err)
	addS := time.Since(t0).Seconds()
	var rows []row
	for _, th := range threads {
		ix.Threads = th
		for _, np := range probes {
			best := 0.0
			var ids []int64
			for r := 0; r < *reps; r++ {
				t := time.Now()
				_, ids, err = ix.Search(queries.Data, queries.N, k, np)
				check(err)
				best = max(best, float64(queries.N)/time.Since(t).Seconds())
			}
			rows = append(rows, row{Engine: "shelf", NProbe: np, Threads: th, QPS: best, TrainS: trainS, AddS: addS,
				Recall1:     groundtruth.Recall(ids, k, gt, 100, queries.N, 1),
				RecallK:     groundtruth.Recall(ids, k, gt, 100, queries.N, k),
				InterRecall: groundtruth.IntersectionRecall(ids, k, gt, 100, queries.N, k)})
		}
	}

	// FAISS, same files.
	faissBuild := "Debian python3-faiss"
	if !*noFAISS {
		for _, th := range threads {
			args := []string{"bench/faiss_ivfpq.py", "--json", "--base", basePath, "--queries", qPath, "--gt", gtPath,
				"--factory", *factory, "--nprobe", *nprobes, "--k", strconv.Itoa(k), "--threads", strconv.Itoa(th),
				"--no-polysemous", "--search-reps", strconv.Itoa(*reps)}
			cmd := exec.Command("/usr/bin/python3", args...)
			cmd.Stderr = os.Stderr
			if _, err := os.Stat(filepath.Join(*faissPath, "faiss")); err == nil {
				cmd.Env = append(os.Environ(), "PYTHONPATH="+*faissPath)
				faissBuild = "FAISS 1.7.3 AVX2 + OpenBLAS"
			}
			out, err := cmd.Output()
			check(err)
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				var r row
				if json.Unmarshal(sc.Bytes(), &r) == nil && r.NProbe > 0 {
					r.Engine = "faiss"
					rows = append(rows, r)
				}
			}
		}
	}

	fmt.Printf("## %s, %d x %d (%d clusters), %d queries, k=%d\n\n", *factory, base.N, base.D, *nclusters, queries.N, k)
	fmt.Printf("Shelf: train %.1f s, add %.1f s: train+add %.0f vectors/s; precomputed tables %.1f MB\n",
		trainS, addS, float64(base.N)/(trainS+addS), float64(ix.PrecomputedTableBytes())/1e6)
	for _, r := range rows {
		if r.Engine == "faiss" {
			fmt.Printf("FAISS (%s, %d threads): train %.1f s, add %.1f s: train+add %.0f vectors/s\n", faissBuild, r.Threads, r.TrainS, r.AddS, float64(base.N)/(r.TrainS+r.AddS))
			break
		}
	}
	fmt.Printf("\n| nprobe | threads | Shelf QPS | FAISS QPS | ratio | Shelf R@1 / R@10 / 10-R@10 | FAISS R@1 / R@10 / 10-R@10 |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		if r.Engine != "shelf" {
			continue
		}
		var f row
		for _, x := range rows {
			if x.Engine == "faiss" && x.NProbe == r.NProbe && x.Threads == r.Threads {
				f = x
			}
		}
		ratio := "-"
		if f.QPS > 0 {
			ratio = fmt.Sprintf("%.2fx", r.QPS/f.QPS)
		}
		fmt.Printf("| %d | %d | %.0f | %.0f | %s | %.3f / %.3f / %.3f | %.3f / %.3f / %.3f |\n",
			r.NProbe, r.Threads, r.QPS, f.QPS, ratio, r.Recall1, r.RecallK, r.InterRecall, f.Recall1, f.RecallK, f.InterRecall)
	}
}
