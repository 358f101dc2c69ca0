package tools

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"strings"

	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("stats", "sizes, free space, list balance and PQ code quality of an index", runStats)
}

// collisionSampleLimit bounds the vectors whose full codes go into the
// collision map, so the map stays around 100 MB whatever the index size.
const collisionSampleLimit = 2_000_000

// statsReport is what `shelf stats --json` prints. Fields a read-only
// opener cannot know (the writer's free-extent map and pending frees) are
// pointers, null in JSON, rather than zeros that would look like facts.
type statsReport struct {
	Index           string          `json:"index"`
	NTotal          int64           `json:"ntotal"`
	NList           int             `json:"nlist"`
	Dim             int             `json:"dim"`
	Factory         string          `json:"factory"`
	Metric          string          `json:"metric"`
	CodeSize        int             `json:"code_size"`
	FileBytes       int64           `json:"file_bytes"`
	UsedBytes       int64           `json:"used_bytes"`
	DataBytes       int64           `json:"data_bytes"`
	FreeBytes       int64           `json:"free_bytes"`
	PendingBytes    *int64          `json:"pending_bytes"`
	FreeExtents     *int            `json:"free_extents"`
	LargestFree     *int64          `json:"largest_free"`
	Histogram       []statsHistoRow `json:"histogram"`
	ImbalanceFactor float64         `json:"imbalance_factor"`
	EmptyLists      int             `json:"empty_lists"`
	FullLists       int             `json:"full_lists"`
	MaxListLen      int             `json:"max_list_len"`
	Generation      uint64          `json:"generation"`
	Seq             uint64          `json:"seq"`
	PQ              *statsPQ        `json:"pq"`
	PQSkipped       string          `json:"pq_skipped,omitempty"`
}

// statsHistoRow is one log2 bucket of list sizes: lists with Min <= size <= Max.
type statsHistoRow struct {
	Min   int64 `json:"min"`
	Max   int64 `json:"max"`
	Lists int   `json:"lists"`
}

// statsPQ measures how well the PQ codebooks are used by the stored
// codes: a codebook whose centroids go unused, or a low entropy, wastes
// bits; many identical full codes mean the quantizer cannot tell those
// vectors apart, so search cannot either.
type statsPQ struct {
	// Layers: the M codes are an RQ's layers (the norm byte is left
	// out), not a PQ's sub-quantizers.
	Layers          bool      `json:"rq_layers,omitempty"`
	M               int       `json:"m"`
	Ksub            int       `json:"ksub"`
	Utilization     []float64 `json:"utilization"`  // per sub-quantizer: used centroids / Ksub
	EntropyBits     []float64 `json:"entropy_bits"` // per sub-quantizer, at most log2(Ksub)
	MeanUtilization float64   `json:"mean_utilization"`
	MeanEntropyBits float64   `json:"mean_entropy_bits"`
	// CollisionRate is the share of the examined vectors whose full code
	// equals another examined vector's code.
	CollisionRate    float64 `json:"collision_rate"`
	CollisionVectors int64   `json:"collision_vectors"` // vectors examined
	CollisionSampled bool    `json:"collision_sampled"` // a sample, not all vectors
}

func runStats(env *Env) error {
	fs := newFlags(env, "stats", "stats --index DIR [--json]", "shelf stats --index /tmp/idx\nshelf stats --index /tmp/idx --json")
	dir := fs.String("index", "", "index directory")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: --index is required", errUsage)
	}
	// Read-only, so stats can be taken while a writer keeps adding.
	ix, err := openReadOnly(env, "stats", *dir)
	if err != nil {
		return err
	}
	defer ix.Close()
	rep, err := statsCollect(ix, *dir, collisionSampleLimit)
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(env.Stdout, string(b))
		return err
	}
	statsPrint(env.Stdout, rep)
	return nil
}

func statsCollect(ix *ivf.Index, dir string, sampleLimit int64) (*statsReport, error) {
	st, err := ix.StorageStats()
	if err != nil {
		return nil, err
	}
	p := ix.Params()
	rep := &statsReport{
		Index: dir, NTotal: st.NTotal, NList: st.NumLists, Dim: p.D,
		Factory: p.Factory(), Metric: p.Metric.String(), CodeSize: st.CodeSize,
		FileBytes: st.FileBytes, UsedBytes: st.UsedBytes, DataBytes: st.DataBytes, FreeBytes: st.FreeBytes,
		ImbalanceFactor: st.ImbalanceFactor, EmptyLists: st.EmptyLists, FullLists: st.FullLists, MaxListLen: st.MaxListLen,
		Generation: st.Generation, Seq: st.Seq,
	}
	if !ix.ReadOnly() {
		rep.PendingBytes, rep.FreeExtents, rep.LargestFree = &st.PendingBytes, &st.FreeExtents, &st.LargestFree
	}
	for i, c := range st.SizeHistogram {
		r := statsHistoRow{Lists: c}
		if i > 0 {
			r.Min, r.Max = int64(1)<<(i-1), int64(1)<<i-1
		}
		rep.Histogram = append(rep.Histogram, r)
	}
	if p.Flat {
		rep.PQSkipped = "IVF,Flat index: vectors are stored uncompressed, there are no PQ codes"
		return rep, nil
	}
	v, err := ix.Lists().Snapshot()
	if err != nil {
		return nil, err
	}
	defer v.Release()
	// The first M bytes of a code: PQ sub-quantizers or RQ layers.
	if rep.PQ, err = statsCodeQuality(v, p.M, 256, st.NTotal, sampleLimit); err != nil {
		return nil, err
	}
	rep.PQ.Layers = p.RQ
	return rep, nil
}

// statsCodeQuality reads every code of the view once. Centroid counts use all
// codes; the collision map takes every stride-th vector so its size is
// bounded by sampleLimit.
func statsCodeQuality(v ivf.Snapshot, m, ksub int, ntotal, sampleLimit int64) (*statsPQ, error) {
	counts := make([]int64, m*ksub)
	stride := int64(1)
	if sampleLimit > 0 && ntotal > sampleLimit {
		stride = (ntotal + sampleLimit - 1) / sampleLimit
	}
	// Keys are 128-bit hashes of the codes: a fixed 16 bytes per entry
	// whatever M is, and a false match among 2M codes has a probability
	// around 2^-87.
	seeds := [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	seen := make(map[[2]uint64]int32, ntotal/stride+1)
	var idx, examined int64
	cs := v.CodeSize()
	for l := 0; l < v.NumLists(); l++ {
		_, codes, err := v.ReadList(l)
		if err != nil {
			return nil, err
		}
		for off := 0; off+cs <= len(codes); off += cs {
			c := codes[off : off+m]
			for j, b := range c {
				counts[j*ksub+int(b)]++
			}
			if idx%stride == 0 {
				seen[[2]uint64{maphash.Bytes(seeds[0], c), maphash.Bytes(seeds[1], c)}]++
				examined++
			}
			idx++
		}
	}
	q := &statsPQ{M: m, Ksub: ksub, Utilization: make([]float64, m), EntropyBits: make([]float64, m),
		CollisionVectors: examined, CollisionSampled: stride > 1}
	for j := 0; j < m; j++ {
		var used int
		var h float64
		for _, c := range counts[j*ksub : (j+1)*ksub] {
			if c == 0 {
				continue
			}
			used++
			pr := float64(c) / float64(idx)
			h -= pr * math.Log2(pr)
		}
		q.Utilization[j] = float64(used) / float64(ksub)
		q.EntropyBits[j] = math.Abs(h) // -0 for a single used centroid
		q.MeanUtilization += q.Utilization[j] / float64(m)
		q.MeanEntropyBits += q.EntropyBits[j] / float64(m)
	}
	var collided int64
	for _, c := range seen {
		if c > 1 {
			collided += int64(c)
		}
	}
	if examined > 0 {
		q.CollisionRate = float64(collided) / float64(examined)
	}
	return q, nil
}

func statsPrint(w io.Writer, r *statsReport) {
	unknown := "not known to a read-only reader"
	fmt.Fprintf(w, "index      %s\n", r.Index)
	fmt.Fprintf(w, "factory    %s, %s, d=%d, %d bytes per code\n", r.Factory, r.Metric, r.Dim, r.CodeSize)
	fmt.Fprintf(w, "ntotal     %d in %d lists (generation %d, commit %d)\n\n", r.NTotal, r.NList, r.Generation, r.Seq)
	fmt.Fprintf(w, "data file  %s\n", statsBytes(r.FileBytes))
	fmt.Fprintf(w, "  used     %s, of it entries %s\n", statsBytes(r.UsedBytes), statsBytes(r.DataBytes))
	fmt.Fprintf(w, "  free     %s\n", statsBytes(r.FreeBytes))
	if r.FullLists > 0 {
		fmt.Fprintf(w, "  full     %d of %d lists have no room left: the next add to each moves it (--headroom of merge and compact leaves room)\n", r.FullLists, r.NList)
	}
	if r.PendingBytes != nil {
		fmt.Fprintf(w, "  pending  %s\n  free extents %d, largest %s\n", statsBytes(*r.PendingBytes), *r.FreeExtents, statsBytes(*r.LargestFree))
	} else {
		fmt.Fprintf(w, "  pending  %s, included in free\n  free extents %s\n", unknown, unknown)
	}
	fmt.Fprintf(w, "\nlist sizes (imbalance factor %.3f, %d empty, largest %d)\n", r.ImbalanceFactor, r.EmptyLists, r.MaxListLen)
	most := 1
	for _, h := range r.Histogram {
		most = max(most, h.Lists)
	}
	for _, h := range r.Histogram {
		label := "0"
		if h.Max > 0 {
			label = fmt.Sprintf("%d-%d", h.Min, h.Max)
		}
		n := (h.Lists*40 + most - 1) / most
		fmt.Fprintf(w, "  %15s %7d %s\n", label, h.Lists, strings.Repeat("#", n))
	}
	if r.PQ == nil {
		fmt.Fprintf(w, "\nPQ diagnostics skipped: %s\n", r.PQSkipped)
		return
	}
	q := r.PQ
	if q.Layers {
		fmt.Fprintf(w, "\nRQ codes (%d layers of %d codewords, then the norm byte)\n", q.M, q.Ksub)
	} else {
		fmt.Fprintf(w, "\nPQ codes (%d sub-quantizers of %d centroids)\n", q.M, q.Ksub)
	}
	fmt.Fprintf(w, "  %4s %12s %14s\n", "sub", "utilization", "entropy (bits)")
	for j := range q.Utilization {
		fmt.Fprintf(w, "  %4d %12.3f %14.3f\n", j, q.Utilization[j], q.EntropyBits[j])
	}
	fmt.Fprintf(w, "  %4s %12.3f %14.3f   (max %.0f bits)\n", "mean", q.MeanUtilization, q.MeanEntropyBits, math.Log2(float64(q.Ksub)))
	sampled := ""
	if q.CollisionSampled {
		sampled = ", sampled"
	}
	fmt.Fprintf(w, "  code collision rate %.4f (%d vectors examined%s): share of vectors whose full code another vector shares\n",
		q.CollisionRate, q.CollisionVectors, sampled)
}

// statsBytes prints a byte count exactly and in binary units.
func statsBytes(n int64) string {
	f, u := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if math.Abs(f) < 1024 {
			break
		}
		f, u = f/1024, s
	}
	if u == "" {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%d B (%.1f %s)", n, f, u)
}
