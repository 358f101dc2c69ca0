package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/shelfdb/shelf/internal/progress"
	"github.com/shelfdb/shelf/store"
)

// demoSource is one in-memory shard of codes, the Source a merge reads.
type demoSource struct {
	cs    int
	ids   [][]int64
	codes [][]byte
}

func (d *demoSource) NumLists() int              { return len(d.ids) }
func (d *demoSource) CodeSize() int              { return d.cs }
func (d *demoSource) ListLen(l int) (int, error) { return len(d.ids[l]), nil }
func (d *demoSource) ReadList(l int) ([]int64, []byte, error) {
	return d.ids[l], d.codes[l], nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "storedemo:", err)
		os.Exit(1)
	}
}

func bar(stderr io.Writer, quiet bool, label, unit string, total int64) *progress.Bar {
	mode := progress.AutoLines
	if quiet {
		mode = progress.Quiet
	}
	return progress.New(stderr, mode, label, unit, total)
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("storedemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 2_000_000, "number of entries (codes + ids)")
	nlist := fs.Int("nlist", 1024, "number of inverted lists")
	cs := fs.Int("code-size", 16, "bytes per code (PQ16: 16)")
	dir := fs.String("dir", "", "where to build the stores (default: a temporary directory, removed afterwards)")
	seed := fs.Uint64("seed", 1, "seed of the synthetic data")
	quiet := fs.Bool("quiet", false, "no progress bars")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *nlist < 1 || *cs < 1 {
		return fmt.Errorf("--n, --nlist and --code-size must be positive")
	}
	root := *dir
	if root == "" {
		tmp, err := os.MkdirTemp("", "shelf-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		root = tmp
	}
	out := stdout
	fmt.Fprintf(out, "storedemo: %d entries of %d-byte codes in %d lists, under %s\n\n", *n, *cs, *nlist, root)

	// Synthetic codes with imbalanced lists, as k-means gives on real data.
	r := rand.New(rand.NewPCG(*seed, 7))
	weights := make([]float64, *nlist)
	var wsum float64
	for l := range weights {
		weights[l] = math.Exp(r.NormFloat64() * 0.7)
		wsum += weights[l]
	}
	cum := make([]float64, *nlist)
	acc := 0.0
	for l, w := range weights {
		acc += w / wsum
		cum[l] = acc
	}
	lists := make([]int64, *n)
	ids := make([]int64, *n)
	codes := make([]byte, *n**cs)
	for i := range lists {
		l, _ := slices.BinarySearch(cum, r.Float64())
		lists[i] = int64(min(l, *nlist-1))
		ids[i] = int64(i)
	}
	for i := range codes {
		codes[i] = byte(r.Uint32())
	}
	mb := float64(*n*(*cs+8)) / 1e6
	row := func(what string, d time.Duration, entries int) {
		fmt.Fprintf(out, "  %-44s %8.2f s %10.2f M entries/s %8.0f MB/s\n", what, d.Seconds(),
			float64(entries)/d.Seconds()/1e6, float64(entries*(*cs+8))/1e6/d.Seconds())
	}

	// 1. Adds in batches of 1,000 spread over lists, 100 batches a commit.
	a, err := store.Create(root+"/added", store.Options{NumLists: *nlist, CodeSize: *cs})
	if err != nil {
		return err
	}
	defer a.Close()
	pb := bar(stderr, *quiet, "add", "entries", int64(*n))
	t0 := time.Now()
	var b *store.Batch
	for i := 0; i < *n; i += 1000 {
		j := min(i+1000, *n)
		if b == nil {
			if b, err = a.Begin(); err != nil {
				return err
			}
		}
		if err := b.AddSpread(lists[i:j], ids[i:j], codes[i**cs:j**cs]); err != nil {
			b.Abort()
			return err
		}
		if (i/1000)%100 == 99 || j == *n {
			if err := b.Commit(); err != nil {
				return err
			}
			b = nil
		}
		pb.Set(int64(j), 0)
	}
	pb.Finish()
	row("add (batches of 1,000, commit every 100)", time.Since(t0), *n)

	// 2. The same entries as 4 shards merged in one two-pass merge.
	var srcs []store.Source
	for s := 0; s < 4; s++ {
		src := &demoSource{cs: *cs, ids: make([][]int64, *nlist), codes: make([][]byte, *nlist)}
		for i := s; i < *n; i += 4 {
			l := lists[i]
			src.ids[l] = append(src.ids[l], ids[i])
			src.codes[l] = append(src.codes[l], codes[i**cs:(i+1)**cs]...)
		}
		srcs = append(srcs, src)
	}
	mbar := bar(stderr, *quiet, "merge", "entries", int64(*n))
	m, err := store.Create(root+"/merged", store.Options{NumLists: *nlist, CodeSize: *cs,
		Progress: func(p store.Progress) { mbar.Set(p.Done, 0) }})
	if err != nil {
		return err
	}
	defer m.Close()
	t0 = time.Now()
	if _, err := m.MergeFrom(srcs, nil); err != nil {
		return err
	}
	mbar.Finish()
	row("merge of 4 shards (two passes, exact slots)", time.Since(t0), *n)

	// 3. Both hold the same lists (as id sets: the order differs).
	va, err := a.View()
	if err != nil {
		return err
	}
	vm, err := m.View()
	if err != nil {
		va.Release()
		return err
	}
	for l := 0; l < *nlist; l++ {
		ia, _ := va.IDs(l)
		im, _ := vm.IDs(l)
		sa, sm := slices.Clone(ia), slices.Clone(im)
		slices.Sort(sa)
		slices.Sort(sm)
		if !slices.Equal(sa, sm) {
			va.Release()
			vm.Release()
			return fmt.Errorf("list %d differs between the added and the merged store", l)
		}
	}
	vm.Release()

	// 4. Adds after the merge just work (FAISS issues 1258/3498).
	t0 = time.Now()
	extra := min(*n, 100_000)
	b, err = m.Begin()
	if err != nil {
		va.Release()
		return err
	}
	if err := b.AddSpread(lists[:extra], ids[:extra], codes[:extra**cs]); err != nil {
		b.Abort()
		va.Release()
		return err
	}
	if err := b.Commit(); err != nil {
		va.Release()
		return err
	}
	row("add after merge (one commit)", time.Since(t0), extra)

	// 5. Compaction of the added store while a reader holds a view.
	before, _ := a.Stats()
	t0 = time.Now()
	cst, err := a.Compact()
	if err != nil {
		va.Release()
		return err
	}
	row("compact (new file, lists in order)", time.Since(t0), *n)
	ia, _ := va.IDs(0) // the old view still reads the old file
	held := len(ia)
	va.Release()

	// 6. A scan of every list through the memory map.
	ro, err := store.OpenReadOnly(root+"/added", nil)
	if err != nil {
		return err
	}
	defer ro.Close()
	v, err := ro.View()
	if err != nil {
		return err
	}
	all := make([]int, *nlist)
	for l := range all {
		all[l] = l
	}
	t0 = time.Now()
	if err := v.Prefetch(all, 2); err != nil {
		v.Release()
		return err
	}
	var sum uint64
	for l := 0; l < *nlist; l++ {
		c, _ := v.Codes(l)
		for _, x := range c {
			sum += uint64(x)
		}
	}
	v.Release()
	row("read-only open, prefetch + scan of all codes", time.Since(t0), *n)

	after, _ := a.Stats()
	if err := a.Check(); err != nil {
		return fmt.Errorf("check after compaction: %w", err)
	}
	if err := m.Check(); err != nil {
		return fmt.Errorf("check of merged store: %w", err)
	}
	fmt.Fprintf(out, "\n  payload %.0f MB; added store %.0f MB before compaction (%.0f MB free or pending), %.0f MB after; a view taken before still read %d ids of list 0\n",
		mb, float64(before.FileBytes)/1e6, float64(before.FreeBytes+before.PendingBytes)/1e6, float64(cst.BytesAfter)/1e6, held)
	fmt.Fprintf(out, "  lists: %d entries, imbalance factor %.2f, largest list %d, %d empty; checks passed (checksum %d)\n",
		after.NTotal, after.ImbalanceFactor, after.MaxListLen, after.EmptyLists, sum%1000)
	return nil
}
