package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/progress"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/ivf"
)

type config struct {
	dir, shelf, python, faissPath, caps, nprobes string
	n                                            int64
	dim, nlist, m, nq, singleNQ, k, clusters     int
	train, block                                 int
	seed                                         int64
	steps                                        string
	faiss                                        bool
	timeout                                      time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.dir, "dir", "", "working directory: the index, queries, ground truth, FAISS files (required)")
	flag.Int64Var(&c.n, "n", 100_000_000, "vectors in the index")
	flag.IntVar(&c.dim, "dim", 128, "dimension")
	flag.IntVar(&c.nlist, "nlist", 4096, "inverted lists")
	flag.IntVar(&c.m, "m", 16, "PQ sub-quantizers (bytes per code)")
	flag.IntVar(&c.nq, "nq", 1000, "queries of the batch runs (with exact ground truth)")
	flag.IntVar(&c.singleNQ, "single-nq", 200, "queries of the one-query-per-call runs (the first of the nq)")
	flag.IntVar(&c.k, "k", 10, "results per query")
	flag.IntVar(&c.clusters, "clusters", 1000, "clusters of the synthetic mixture")
	flag.IntVar(&c.train, "train", 200_000, "training sample")
	flag.IntVar(&c.block, "block", 500_000, "vectors per code block of the parallel build")
	flag.Int64Var(&c.seed, "seed", 1, "seed of the data")
	flag.StringVar(&c.caps, "caps", "none,1G,2G,4G", "memory caps of the search runs (none: uncapped and warm)")
	flag.StringVar(&c.nprobes, "nprobe", "1,16,64", "nprobe values")
	flag.StringVar(&c.steps, "steps", "build,search", "build (index, queries, ground truth, FAISS export) and/or search (the table)")
	flag.StringVar(&c.shelf, "shelf", "", "the shelf binary (default: built into DIR)")
	flag.StringVar(&c.python, "python", "/usr/bin/python3", "python with numpy and faiss")
	flag.StringVar(&c.faissPath, "faiss-path", "/tmp/faiss-opt/python", "PYTHONPATH of the AVX2 FAISS build (../shared/faiss-avx2.sh), used when present")
	flag.BoolVar(&c.faiss, "faiss", true, "search the FAISS export side by side")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "longest run; a slower one is killed and shown as such")
	flag.Parse()
	if c.dir == "" || c.n < 1 || c.dim < 1 || c.nq < 1 || c.k < 1 || c.block < 1 {
		fmt.Fprintln(os.Stderr, "bigsearch: --dir is required; sizes must be positive")
		os.Exit(2)
	}
	if err := run(&c); err != nil {
		fmt.Fprintln(os.Stderr, "bigsearch:", err)
		os.Exit(1)
	}
}

func (c *config) path(name string) string { return filepath.Join(c.dir, name) }

func run(c *config) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	if c.shelf == "" {
		c.shelf = c.path("shelf")
		if out, err := exec.Command("go", "build", "-o", c.shelf, "./tools/shelf").CombinedOutput(); err != nil {
			return fmt.Errorf("build shelf: %v\n%s", err, out)
		}
	}
	if strings.Contains(c.steps, "build") {
		if err := build(c); err != nil {
			return err
		}
	}
	if strings.Contains(c.steps, "search") {
		return search(c)
	}
	return nil
}

// build makes the index the way users build a large one: train on a
// sample into an empty index, encode the data into code blocks (here
// generated block by block, never stored raw), merge the blocks. The same
// pass over the data computes the exact ground truth of the queries.
func build(c *config) error {
	idx := c.path("index")
	if _, err := os.Stat(filepath.Join(idx, "model.shelf")); err == nil {
		fmt.Printf("index %s exists: build skipped\n", idx)
		return nil
	}
	mix := synth.New(c.dim, c.clusters, c.seed)
	t0 := time.Now()
	ix, err := ivf.NewFromFactory(fmt.Sprintf("IVF%d,PQ%d", c.nlist, c.m), c.dim, ivf.L2)
	if err != nil {
		return err
	}
	sample := mix.Sample(c.train, 1<<32)
	if err := ix.Train(sample.Data, sample.N, &ivf.TrainOptions{Seed: c.seed}); err != nil {
		return err
	}
	if err := os.RemoveAll(idx); err != nil {
		return err
	}
	if err := ix.ToDisk(idx); err != nil {
		return err
	}
	fmt.Printf("train: %d vectors, %v\n", c.train, time.Since(t0).Round(time.Second))

	queries := mix.Sample(c.nq, synth.QueryStream)
	heaps := make([]*vecmath.TopK, c.nq)
	for i := range heaps {
		heaps[i] = vecmath.NewTopK(c.k)
	}
	blocks := c.path("blocks")
	nb := (c.n + int64(c.block) - 1) / int64(c.block)
	bar := progress.New(os.Stderr, progress.AutoLines, "encode + ground truth", "vectors", c.n)
	t1 := time.Now()
	for b := int64(0); b < nb; b++ {
		first := b * int64(c.block)
		count := min(int64(c.block), c.n-first)
		x := mix.Sample(int(count), synth.BaseStream+2+uint64(b))
		blk := ivf.Block{Size: int64(c.block), Number: b, First: first, Count: count}
		if ix.CheckBlock(blocks, blk) != nil {
			if err := ix.EncodeBlock(blocks, blk, x.Data); err != nil {
				return err
			}
		}
		ids, dists, err := groundtruth.KNN(x, queries, c.k, ivf.L2, 0)
		if err != nil {
			return err
		}
		for q := range heaps {
			for j := 0; j < c.k; j++ {
				if id := ids[q*c.k+j]; id >= 0 {
					heaps[q].Push(dists[q*c.k+j], first+id)
				}
			}
		}
		bar.Add(count)
	}
	bar.Finish()
	fmt.Printf("encode + ground truth: %d vectors, %v\n", c.n, time.Since(t1).Round(time.Second))
	t2 := time.Now()
	rep, err := ix.MergeBlocks(context.Background(), blocks, nil)
	if err != nil {
		return err
	}
	if err := ix.Close(); err != nil {
		return err
	}
	fmt.Printf("merge: %d vectors from %d blocks, %v\n", rep.Vectors, rep.Blocks, time.Since(t2).Round(time.Second))
	if err := os.RemoveAll(blocks); err != nil {
		return err
	}
	gt := make([]int32, 0, c.nq*c.k)
	for _, h := range heaps {
		_, ids := h.Sorted()
		for _, id := range ids {
			gt = append(gt, int32(id))
		}
	}
	if err := vecio.WriteFvecs(c.path("queries.fvecs"), queries); err != nil {
		return err
	}
	if err := vecio.WriteIvecs(c.path("gt.ivecs"), c.nq, c.k, gt); err != nil {
		return err
	}
	if c.faiss {
		t3 := time.Now()
		out, err := exec.Command(c.shelf, "export-faiss", "--index", idx, "--faiss", c.path("faiss.index"),
			"--ondisk", c.path("faiss.ivfdata"), "--quiet").CombinedOutput()
		if err != nil {
			return fmt.Errorf("export-faiss: %v\n%s", err, out)
		}
		fmt.Printf("export to FAISS (OnDiskInvertedLists): %v\n", time.Since(t3).Round(time.Second))
	}
	return nil
}

// row is one measurement: an engine under a cap, batch or one query per
// call, at one nprobe.
type row struct {
	Engine  string  `json:"engine"`
	Cap     string  `json:"cap"`
	Mode    string  `json:"mode"`
	NProbe  int     `json:"nprobe"`
	QPS     float64 `json:"qps"`
	Recall1 float64 `json:"recall1"`
	RecallK float64 `json:"recallk"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
	ReadMB  float64 `json:"read_mb"`
	ReadMBs float64 `json:"read_mb_per_s"`
	NQ      int     `json:"nq"`
	Peak    int64   `json:"peak"`
	Limit   int64   `json:"limit"`
	OOM     int64   `json:"oom_kills"`
	Failcnt int64   `json:"failcnt"`
	// TimedOut: the run took longer than --timeout and was killed.
	TimedOut bool `json:"timed_out,omitempty"`
	// DeviceMBs: fio's random-read MB/s (the lists' mean size, 64 in
	// flight) measured just before a capped Shelf run: the device's speed
	// drifts by 2x within minutes on a virtual disk, so each row's share
	// is of the figure measured beside it.
	DeviceMBs float64 `json:"device_mb_per_s,omitempty"`
}

func search(c *config) error {
	caps := strings.Split(c.caps, ",")
	var nprobes []int
	for _, s := range strings.Split(c.nprobes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("--nprobe %q", c.nprobes)
		}
		nprobes = append(nprobes, n)
	}
	single := c.path("queries-single.fvecs")
	q, err := vecio.ReadFloat32(c.path("queries.fvecs"))
	if err != nil {
		return err
	}
	_, gtK, gt, err := vecio.ReadInt64(c.path("gt.ivecs"))
	if err != nil {
		return err
	}
	ns := min(c.singleNQ, q.N)
	if err := vecio.WriteFvecs(single, vecio.Matrix{N: ns, D: q.D, Data: q.Data[:ns*q.D]}); err != nil {
		return err
	}
	gt32 := make([]int32, ns*gtK)
	for i := range gt32 {
		gt32[i] = int32(gt[i])
	}
	if err := vecio.WriteIvecs(c.path("gt-single.ivecs"), ns, gtK, gt32); err != nil {
		return err
	}
	disk, err := diskFigures(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bigsearch: device figures:", err)
	}
	var rows []row
	results, err := os.Create(c.path("rows.jsonl"))
	if err != nil {
		return err
	}
	defer results.Close()
	for _, cp := range caps {
		for _, mode := range []string{"batch", "single"} {
			for _, np := range nprobes {
				engines := []string{"shelf"}
				if c.faiss {
					engines = append(engines, "faiss")
				}
				for _, eng := range engines {
					var dev float64
					if eng == "shelf" && cp != "none" && disk.BlockSize > 0 {
						if dev, err = fio(c, disk.BlockSize, 64, pairedFIO); err != nil {
							return err
						}
					}
					r, err := measure(c, eng, cp, mode, np)
					if err != nil {
						return err
					}
					r.DeviceMBs = dev
					rows = append(rows, r)
					b, _ := json.Marshal(r)
					fmt.Fprintln(results, string(b))
					fmt.Fprintf(os.Stderr, "%s\n", b)
				}
			}
		}
	}
	printTable(c, rows, disk)
	return nil
}

// measure runs one search in a fresh memory group (bench/capped.sh),
// cold for every capped run.
func measure(c *config, engine, cp, mode string, nprobe int) (row, error) {
	r := row{Engine: engine, Cap: cp, Mode: mode, NProbe: nprobe}
	queries, gt := c.path("queries.fvecs"), c.path("gt.ivecs")
	batch := "0"
	if mode == "single" {
		queries, gt, batch = c.path("queries-single.fvecs"), c.path("gt-single.ivecs"), "1"
	}
	var cmd []string
	np := strconv.Itoa(nprobe)
	switch engine {
	case "shelf":
		cmd = []string{c.shelf, "search", "--index", c.path("index"), "--queries", queries, "--gt", gt,
			"--k", strconv.Itoa(c.k), "--nprobe", np, "--batch", batch, "--json", "--repeat", "1"}
		if cp != "none" {
			cmd = append(cmd, "--memory", cp)
		}
	case "faiss":
		cmd = []string{c.python, "bench/faiss_search.py", "--index", c.path("faiss.index"), "--queries", queries,
			"--gt", gt, "--k", strconv.Itoa(c.k), "--nprobe", np, "--batch", batch}
	}
	report := c.path("capped.json")
	os.Remove(report)
	var args []string
	limit := cp
	if cp == "none" {
		limit = "1T" // a group without a real limit, for the peak
		// Uncapped runs are warm: one run first to fill the page cache.
		warm := exec.Command(cmd[0], cmd[1:]...)
		warm.Env = c.env()
		if out, err := warm.CombinedOutput(); err != nil {
			return r, fmt.Errorf("%s warm-up: %v\n%s", engine, err, out)
		}
		args = []string{"bench/capped.sh", limit, "--"}
	} else {
		args = []string{"bench/capped.sh", limit, "--cold", "--"}
	}
	x := exec.Command("bash", append(args, cmd...)...)
	x.Env = append(c.env(), "CAPPED_REPORT="+report)
	var stdout, stderr bytes.Buffer
	x.Stdout, x.Stderr = &stdout, &stderr
	// A run past the time limit is killed, with everything it started,
	// and its row says so.
	x.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := x.Start(); err != nil {
		return r, err
	}
	timer := time.AfterFunc(c.timeout, func() { _ = syscall.Kill(-x.Process.Pid, syscall.SIGKILL) })
	runErr := x.Wait()
	if !timer.Stop() {
		r.TimedOut = true
		// capped.sh was killed before it could remove its group.
		groups, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/memory/shelf-capped-%d-*", x.Process.Pid))
		for _, g := range groups {
			_ = os.Remove(g)
		}
		return r, nil
	}
	if b, err := os.ReadFile(report); err == nil {
		var rep struct {
			Limit    int64 `json:"limit"`
			Peak     int64 `json:"peak"`
			Failcnt  int64 `json:"failcnt"`
			OOMKills int64 `json:"oom_kills"`
		}
		if json.Unmarshal(b, &rep) == nil {
			r.Peak, r.Limit, r.Failcnt, r.OOM = rep.Peak, rep.Limit, rep.Failcnt, rep.OOMKills
		}
	}
	if runErr != nil {
		if r.OOM > 0 {
			r.QPS = 0 // killed: the row says so
			return r, nil
		}
		return r, fmt.Errorf("%s %s: %v\n%s%s", engine, strings.Join(cmd, " "), runErr, stdout.String(), stderr.String())
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 0 && line[0] == '{' {
			var v struct {
				QPS     float64 `json:"qps"`
				Recall1 float64 `json:"recall1"`
				RecallK float64 `json:"recallk"`
				P50     float64 `json:"p50_ms"`
				P99     float64 `json:"p99_ms"`
				ReadMB  float64 `json:"read_mb"`
				ReadMBs float64 `json:"read_mb_per_s"`
				NQ      int     `json:"nq"`
			}
			if err := json.Unmarshal(line, &v); err == nil {
				r.QPS, r.Recall1, r.RecallK, r.P50MS, r.P99MS, r.ReadMB, r.ReadMBs, r.NQ = v.QPS, v.Recall1, v.RecallK, v.P50, v.P99, v.ReadMB, v.ReadMBs, v.NQ
			}
		}
	}
	return r, nil
}

func (c *config) env() []string {
	env := os.Environ()
	if st, err := os.Stat(c.faissPath); err == nil && st.IsDir() {
		env = append(env, "PYTHONPATH="+c.faissPath)
	}
	return env
}

// diskFig is the device's random-read throughput with requests of the
// lists' size: fio, direct I/O, on the index's data file.
type diskFig struct {
	BlockSize                int64
	Depth64, Depth32, Depth1 float64 // MB/s
}

func diskFigures(c *config) (diskFig, error) {
	var f diskFig
	ix, err := ivf.OpenReadOnly(c.path("index"))
	if err != nil {
		return f, err
	}
	mean := float64(ix.NTotal()) / float64(ix.Params().NList) * float64(ix.Params().M+8)
	ix.Close()
	bs := int64(4096)
	for float64(bs*2) <= mean {
		bs *= 2
	}
	f.BlockSize = bs
	if _, err := exec.LookPath("fio"); err != nil {
		return f, fmt.Errorf("fio not installed (apt-get install fio)")
	}
	for _, depth := range []int{64, 32, 1} {
		mbs, err := fio(c, bs, depth, 10*time.Second)
		if err != nil {
			return f, err
		}
		switch depth {
		case 64:
			f.Depth64 = mbs
		case 32:
			f.Depth32 = mbs
		default:
			f.Depth1 = mbs
		}
	}
	return f, nil
}

// pairedFIO is how long fio reads before each capped Shelf run.
const pairedFIO = 3 * time.Second

// fio returns the MB/s of direct random reads of bs bytes, depth in
// flight, for d, on the index's data file.
func fio(c *config, bs int64, depth int, d time.Duration) (float64, error) {
	files, _ := filepath.Glob(filepath.Join(c.path("index"), "lists", "lists.*.data"))
	if len(files) == 0 {
		return 0, fmt.Errorf("no data file in %s", c.path("index"))
	}
	out, err := exec.Command("fio", "--name=r", "--filename="+files[0], "--rw=randread", "--direct=1",
		"--ioengine=libaio", fmt.Sprintf("--bs=%d", bs), fmt.Sprintf("--iodepth=%d", depth),
		fmt.Sprintf("--runtime=%d", int(d.Seconds())), "--time_based", "--readonly", "--output-format=json").Output()
	if err != nil {
		return 0, fmt.Errorf("fio: %v", err)
	}
	var res struct {
		Jobs []struct {
			Read struct {
				BW float64 `json:"bw_bytes"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) == 0 {
		return 0, fmt.Errorf("fio output: %v", err)
	}
	return res.Jobs[0].Read.BW / 1e6, nil
}

func printTable(c *config, rows []row, disk diskFig) {
	fmt.Printf("\n%d x %d, IVF%d,PQ%d; batch: %d queries in one call; single: %d queries one per call; k=%d\n",
		c.n, c.dim, c.nlist, c.m, c.nq, min(c.singleNQ, c.nq), c.k)
	if disk.BlockSize > 0 {
		fmt.Printf("device (fio, direct random reads of %d KiB, the lists' mean size): %.0f MB/s at 64 in flight, %.0f MB/s at 32, %.0f MB/s one at a time; each capped Shelf row's share is of fio's figure (64 in flight, %v) measured just before it\n",
			disk.BlockSize>>10, disk.Depth64, disk.Depth32, disk.Depth1, pairedFIO)
	}
	fmt.Println()
	fmt.Println("| cap | mode | nprobe | Shelf QPS | FAISS QPS | ratio | Shelf p50 / p99 ms | FAISS p50 / p99 ms | R@1 Shelf / FAISS | R@10 Shelf / FAISS | Shelf MB/query | Shelf read MB/s / device MB/s just before (share) | peak MiB Shelf / FAISS |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for i := 0; i < len(rows); i++ {
		s := rows[i]
		var f row
		if c.faiss && i+1 < len(rows) && rows[i+1].Engine == "faiss" {
			f = rows[i+1]
			i++
		}
		ratio := "-"
		if f.QPS > 0 {
			ratio = fmt.Sprintf("%.2fx", s.QPS/f.QPS)
		}
		lat := func(r row) string {
			if r.Mode != "single" {
				return "-"
			}
			return fmt.Sprintf("%.2f / %.2f", r.P50MS, r.P99MS)
		}
		share := "-"
		if s.Cap != "none" && s.DeviceMBs > 0 {
			share = fmt.Sprintf("%.0f / %.0f (%.0f%%)", s.ReadMBs, s.DeviceMBs, 100*s.ReadMBs/s.DeviceMBs)
		}
		mbq := "-"
		if s.NQ > 0 && s.ReadMB > 0 {
			mbq = fmt.Sprintf("%.2f", s.ReadMB/float64(s.NQ))
		}
		fqps := fmt.Sprintf("%.0f", f.QPS)
		switch {
		case f.OOM > 0:
			fqps = "OOM-killed"
		case f.TimedOut:
			fqps = fmt.Sprintf("> %v", c.timeout)
		}
		fmt.Printf("| %s | %s | %d | %.0f | %s | %s | %s | %s | %.3f / %.3f | %.3f / %.3f | %s | %s | %.0f / %.0f |\n",
			s.Cap, s.Mode, s.NProbe, s.QPS, fqps, ratio, lat(s), lat(f), s.Recall1, f.Recall1, s.RecallK, f.RecallK,
			mbq, share, float64(s.Peak)/(1<<20), float64(f.Peak)/(1<<20))
	}
}
