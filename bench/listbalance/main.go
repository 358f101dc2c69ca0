package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/shelfdb/shelf/internal/groundtruth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// counter is a Scanner that counts, per query, the codes of the lists it
// probes, and lets the CPU scanner do the scan. Search hands it the
// blocks of queries in order, one at a time.
type counter struct {
	ivf.CPUScanner
	next  int     // first query of the next block
	codes []int64 // per query
}

func (c *counter) Scan(req *ivf.ScanRequest, src ivf.ListSource) ([]float32, []int64, error) {
	for i, l := range req.Lists {
		ids, _, err := src.ReadList(l)
		if err != nil {
			return nil, nil, err
		}
		for _, q := range req.ProbeQuery[req.ProbeStart[i]:req.ProbeStart[i+1]] {
			c.codes[c.next+int(q)] += int64(len(ids))
		}
	}
	c.next += req.NQ
	return c.CPUScanner.Scan(req, src)
}

type report struct {
	Index           string  `json:"index"`
	NTotal          int64   `json:"ntotal"`
	NList           int     `json:"nlist"`
	ImbalanceFactor float64 `json:"imbalance_factor"`
	MaxListLen      int     `json:"max_list_len"`
	NProbe          int     `json:"nprobe"`
	CodesMean       float64 `json:"codes_per_query_mean"`
	CodesP50        int64   `json:"codes_per_query_p50"`
	CodesP99        int64   `json:"codes_per_query_p99"`
	CodesMax        int64   `json:"codes_per_query_max"`
	Recall1         float64 `json:"recall1"`
	RecallK         float64 `json:"recallk"`
	IntersectionK   float64 `json:"intersectionk"`
	K               int     `json:"k"`
}

func main() {
	queries := flag.String("queries", "", "query vectors (.fvecs, .bvecs or .npy)")
	gtFile := flag.String("gt", "", "ground truth (.ivecs), nearest first")
	nprobe := flag.Int("nprobe", 16, "lists probed per query")
	k := flag.Int("k", 10, "results per query")
	flag.Parse()
	if *queries == "" || *gtFile == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: listbalance --queries FILE --gt FILE [--nprobe 16] [--k 10] INDEX...")
		os.Exit(2)
	}
	check := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "listbalance:", err)
			os.Exit(1)
		}
	}
	q, err := vecio.ReadFloat32(*queries)
	check(err)
	_, kGT, gt, err := vecio.ReadInt64(*gtFile)
	check(err)
	for _, dir := range flag.Args() {
		ix, err := ivf.OpenReadOnly(dir)
		check(err)
		st, err := ix.StorageStats()
		check(err)
		c := &counter{codes: make([]int64, q.N)}
		_, ids, err := ix.SearchWith(q.Data, q.N, *k, *nprobe, c)
		check(err)
		check(ix.Close())
		var sum int64
		for _, v := range c.codes {
			sum += v
		}
		sorted := slices.Clone(c.codes)
		slices.Sort(sorted)
		pct := func(p float64) int64 { return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))] }
		r := report{
			Index: dir, NTotal: st.NTotal, NList: ix.Params().NList,
			ImbalanceFactor: st.ImbalanceFactor, MaxListLen: st.MaxListLen, NProbe: *nprobe,
			CodesMean: float64(sum) / float64(q.N), CodesP50: pct(0.50), CodesP99: pct(0.99), CodesMax: sorted[len(sorted)-1],
			Recall1:       groundtruth.Recall(ids, *k, gt, kGT, q.N, 1),
			RecallK:       groundtruth.Recall(ids, *k, gt, kGT, q.N, *k),
			IntersectionK: groundtruth.IntersectionRecall(ids, *k, gt, kGT, q.N, *k),
			K:             *k,
		}
		b, err := json.Marshal(r)
		check(err)
		fmt.Println(string(b))
	}
}
