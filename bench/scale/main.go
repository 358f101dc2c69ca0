package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shelfdb/shelf/internal/progress"
	"github.com/shelfdb/shelf/store"
)

func main() {
	n := flag.Int64("n", 1_000_000_000, "entries of the build (codes + ids)")
	extra := flag.Int64("extra", 1_000_000, "entries added after the build, spread over all lists")
	build := flag.String("build", "merge", "how the n entries go in: merge (4 shards, two-pass merge) or add (durable spread adds)")
	nlist := flag.Int("nlist", 65536, "inverted lists")
	cs := flag.Int("code-size", 16, "bytes per code (PQ16: 16)")
	perCommit := flag.Int("commit", 4_000_000, "entries per durable commit of the adds")
	dir := flag.String("dir", "", "directory of the store (required; must not exist)")
	verify := flag.Int("verify-lists", 512, "lists verified entry by entry")
	seed := flag.Uint64("seed", 1, "seed of the synthetic entries")
	headroom := flag.Float64("headroom", 0, "room the merge leaves in each slot, as a share of the list's size")
	quiet := flag.Bool("quiet", false, "no progress bars")
	flag.Parse()
	if *dir == "" || *n < 1 || *extra < 0 || *nlist < 1 || *cs < 1 || *perCommit < 1 || (*build != "merge" && *build != "add") {
		fmt.Fprintln(os.Stderr, "scale: --dir is required; --n, --nlist, --code-size and --commit must be positive; --build is merge or add")
		os.Exit(2)
	}
	if _, err := os.Stat(*dir); err == nil {
		fmt.Fprintf(os.Stderr, "scale: %s exists; give a new directory\n", *dir)
		os.Exit(2)
	}
	mem := startMemSampler()
	g := newGen(*seed, *nlist, *cs, *n, *build == "merge")
	if err := run(g, *extra, *perCommit, *headroom, *dir, *verify, *quiet, mem); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// gen derives every entry from its id. With a merge build, ids [0, n)
// are laid out list by list (list l holds ids [start[l], start[l+1]),
// sizes log-normal, as k-means gives), so a shard can produce a list
// without scanning all ids; other ids (the adds) go to a list chosen by
// a hash of the id.
type gen struct {
	seed, nlist uint64
	cs          int
	n           int64
	start       []int64 // nil: every id hashed
}

func newGen(seed uint64, nlist, cs int, n int64, ranged bool) gen {
	g := gen{seed: seed, nlist: uint64(nlist), cs: cs, n: n}
	if !ranged {
		return g
	}
	r := rand.New(rand.NewPCG(seed, 9))
	w := make([]float64, nlist)
	var sum float64
	for l := range w {
		w[l] = math.Exp(0.5 * r.NormFloat64())
		sum += w[l]
	}
	g.start = make([]int64, nlist+1)
	acc := 0.0
	for l := range w {
		acc += w[l]
		g.start[l+1] = min(n, int64(acc/sum*float64(n)))
	}
	g.start[nlist] = n
	return g
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (g gen) list(id int64) int64 {
	if g.start != nil && id < g.n {
		l, found := slices.BinarySearch(g.start, id)
		if !found {
			l--
		}
		for g.start[l+1] == id { // skip empty lists
			l++
		}
		return int64(l)
	}
	return int64(splitmix(g.seed^uint64(id)) % g.nlist)
}

func (g gen) code(id int64, out []byte) {
	h := splitmix(g.seed ^ uint64(id) ^ 0x5bd1e995)
	for j := range out {
		if j%8 == 0 && j > 0 {
			h = splitmix(h)
		}
		out[j] = byte(h >> (8 * (j % 8)))
	}
}

// shard is one of the merge's sources: the ids of each list's range that
// are s modulo shards.
type shard struct {
	g         gen
	s, shards int64
}

func (sh shard) NumLists() int { return int(sh.g.nlist) }
func (sh shard) CodeSize() int { return sh.g.cs }

// first is the first id >= lo that is s modulo shards.
func (sh shard) first(lo int64) int64 { return lo + ((sh.s-lo%sh.shards)+sh.shards)%sh.shards }

func (sh shard) ListLen(l int) (int, error) {
	lo, hi := sh.first(sh.g.start[l]), sh.g.start[l+1]
	if lo >= hi {
		return 0, nil
	}
	return int((hi-lo-1)/sh.shards + 1), nil
}

func (sh shard) ReadList(l int) ([]int64, []byte, error) {
	k, _ := sh.ListLen(l)
	ids, codes := make([]int64, k), make([]byte, k*sh.g.cs)
	for j, id := 0, sh.first(sh.g.start[l]); j < k; j, id = j+1, id+sh.shards {
		ids[j] = id
		sh.g.code(id, codes[j*sh.g.cs:(j+1)*sh.g.cs])
	}
	return ids, codes, nil
}

func run(g gen, extra int64, perCommit int, headroom float64, dir string, verify int, quiet bool, mem *memSampler) error {
	cs := int64(g.cs)
	entryBytes := float64(cs + 8)
	mode := progress.Auto
	if quiet {
		mode = progress.Quiet
	}
	how := "durable adds"
	if g.start != nil {
		how = "a merge of 4 shards"
		if headroom > 0 {
			how += fmt.Sprintf(" (headroom %g)", headroom)
		}
	}
	fmt.Printf("scale: %d entries of %d-byte codes in %d lists (%.1f GB of payload) built with %s, then %d added, in %s; %d CPUs\n\n",
		g.n, cs, g.nlist, float64(g.n)*entryBytes/1e9, how, extra, dir, runtime.NumCPU())
	fmt.Printf("  %-46s %9s %12s %9s %14s\n", "step", "seconds", "M entries/s", "MB/s", "peak anon RSS")
	row := func(what string, d time.Duration, entries int64) {
		s := d.Seconds()
		fmt.Printf("  %-46s %9.1f %12.2f %9.0f %11.0f MB\n", what, s, float64(entries)/s/1e6,
			float64(entries)*entryBytes/1e6/s, float64(mem.takePeak())/1e6)
	}
	var bar *progress.Bar
	st, err := store.Create(dir, store.Options{NumLists: int(g.nlist), CodeSize: g.cs,
		Progress: func(p store.Progress) {
			if bar != nil {
				bar.Set(p.Done, 0)
			}
		}})
	if err != nil {
		return err
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()

	// 1. The build.
	t0 := time.Now()
	if g.start != nil {
		bar = progress.New(os.Stderr, mode, "merge", "entries", g.n)
		srcs := make([]store.Source, 4)
		for s := range srcs {
			srcs[s] = shard{g, int64(s), int64(len(srcs))}
		}
		if _, err := st.MergeFrom(srcs, &store.MergeOptions{Headroom: headroom}); err != nil {
			return err
		}
		bar.Finish()
		slots := "exact slots"
		if headroom > 0 {
			slots = fmt.Sprintf("slots +%g%%", 100*headroom)
		}
		row(fmt.Sprintf("merge of 4 shards (two passes, %s)", slots), time.Since(t0), g.n)
	} else {
		if err := addRange(st, g, 0, g.n, perCommit, mode, "add"); err != nil {
			return err
		}
		row(fmt.Sprintf("add (commits of %d, fdatasync each)", perCommit), time.Since(t0), g.n)
	}
	built, err := st.Stats()
	if err != nil {
		return err
	}

	// 2. Adds after the build: every list grows.
	if extra > 0 {
		t0 = time.Now()
		if err := addRange(st, g, g.n, g.n+extra, perCommit, mode, "add after build"); err != nil {
			return err
		}
		row(fmt.Sprintf("add %d after the build (durable commits)", extra), time.Since(t0), extra)
	}
	before, err := st.Stats()
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	st = nil

	// 3. Reopen: the list table comes back from Pebble.
	t0 = time.Now()
	if st, err = store.Open(dir, &store.Options{Progress: func(p store.Progress) {
		if bar != nil {
			bar.Set(p.Done, 0)
		}
	}}); err != nil {
		return err
	}
	fmt.Printf("  %-46s %9.3f %12s %9s %11.0f MB\n", "reopen", time.Since(t0).Seconds(), "", "", float64(mem.takePeak())/1e6)

	// 4. A read-only process sees every entry; a sample of lists is
	// checked entry by entry.
	t0 = time.Now()
	checked, err := verifyLists(dir, g, g.n+extra, verify)
	if err != nil {
		return err
	}
	row(fmt.Sprintf("read-only open, count, verify %d lists", min(verify, int(g.nlist))), time.Since(t0), checked)

	// 5. Compaction, when the disk has room for the new file.
	var after int64
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return err
	}
	if free := int64(fs.Bavail) * fs.Bsize; free < before.DataBytes+before.DataBytes/20+1<<30 {
		fmt.Printf("  %-46s (needs %.1f GB free, %.1f GB are)\n", "compact: skipped", float64(before.DataBytes)/1e9*1.05+1, float64(free)/1e9)
	} else {
		bar = progress.New(os.Stderr, mode, "compact", "entries", g.n+extra)
		t0 = time.Now()
		cst, err := st.Compact()
		bar.Finish()
		if err != nil {
			return err
		}
		row("compact (new file, lists in order)", time.Since(t0), cst.Entries)
		after = cst.BytesAfter
	}

	// 6. The whole consistency check.
	t0 = time.Now()
	if err := st.Check(); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	fmt.Printf("  %-46s %9.1f %12s %9s %11.0f MB\n", "check (slots, free space, list table)", time.Since(t0).Seconds(), "", "", float64(mem.takePeak())/1e6)
	if err := st.Close(); err != nil {
		return err
	}
	st = nil
	fmt.Printf("\n  data file: %.1f GB after the build (%.1f GB of entries), %.1f GB after the adds (%.1f GB of entries)",
		float64(built.FileBytes)/1e9, float64(built.DataBytes)/1e9, float64(before.FileBytes)/1e9, float64(before.DataBytes)/1e9)
	if after > 0 {
		fmt.Printf(", %.1f GB after compaction", float64(after)/1e9)
	}
	fmt.Printf("\n  peak memory of the process: %.0f MB anonymous (heap, stacks), %.0f MB resident in all (VmHWM, with mapped file pages)\n",
		float64(mem.anonMax())/1e6, float64(mem.hwm())/1e6)
	return nil
}

// addRange adds ids [lo, hi) in calls of 10,000 spread over the lists,
// committing (fdatasync) every perCommit entries.
func addRange(st *store.Store, g gen, lo, hi int64, perCommit int, mode progress.Mode, label string) error {
	const call = 10_000
	cs := int64(g.cs)
	lists, ids, codes := make([]int64, call), make([]int64, call), make([]byte, call*cs)
	bar := progress.New(os.Stderr, mode, label, "entries", hi-lo)
	var b *store.Batch
	inBatch := 0
	for i := lo; i < hi; i += call {
		m := min(int64(call), hi-i)
		for j := range m {
			lists[j], ids[j] = g.list(i+j), i+j
			g.code(i+j, codes[j*cs:(j+1)*cs])
		}
		if b == nil {
			var err error
			if b, err = st.Begin(); err != nil {
				return err
			}
		}
		if err := b.AddSpread(lists[:m], ids[:m], codes[:m*cs]); err != nil {
			b.Abort()
			return err
		}
		if inBatch += int(m); inBatch >= perCommit || i+m == hi {
			if err := b.Commit(); err != nil {
				return err
			}
			b, inBatch = nil, 0
		}
		bar.Set(i+m-lo, 0)
	}
	bar.Finish()
	return nil
}

// verifyLists opens dir read-only, checks that its lists hold total
// entries, and checks verify random lists entry by entry; it returns the
// entries checked.
func verifyLists(dir string, g gen, total int64, verify int) (int64, error) {
	ro, err := store.OpenReadOnly(dir, nil)
	if err != nil {
		return 0, err
	}
	defer ro.Close()
	v, err := ro.View()
	if err != nil {
		return 0, err
	}
	defer v.Release()
	var count int64
	for l := range int(g.nlist) {
		k, err := v.ListLen(l)
		if err != nil {
			return 0, err
		}
		count += int64(k)
	}
	if count != total {
		return 0, fmt.Errorf("the lists hold %d entries, %d were added", count, total)
	}
	r := rand.New(rand.NewPCG(g.seed, 3))
	cs := int64(g.cs)
	want := make([]byte, cs)
	var checked int64
	for range min(verify, int(g.nlist)) {
		l := r.IntN(int(g.nlist))
		ids, codes, err := v.ReadList(l)
		if err != nil {
			return 0, err
		}
		for e, id := range ids {
			g.code(id, want)
			if id < 0 || id >= total || g.list(id) != int64(l) || string(codes[int64(e)*cs:int64(e+1)*cs]) != string(want) {
				return 0, fmt.Errorf("list %d entry %d: id %d with a code or list that is not its own", l, e, id)
			}
		}
		checked += int64(len(ids))
	}
	return checked, nil
}

// memSampler follows the process's anonymous resident memory (RssAnon:
// heap, stacks; not the page cache or mapped file pages), sampled every
// 50 ms.
type memSampler struct {
	mu        sync.Mutex
	peak, all int64
}

func startMemSampler() *memSampler {
	m := &memSampler{}
	go func() {
		for {
			if v, err := statusField("RssAnon"); err == nil {
				m.mu.Lock()
				m.peak, m.all = max(m.peak, v), max(m.all, v)
				m.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return m
}

// takePeak returns the peak since the last call.
func (m *memSampler) takePeak() int64 {
	if v, err := statusField("RssAnon"); err == nil {
		m.mu.Lock()
		m.peak, m.all = max(m.peak, v), max(m.all, v)
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peak
	m.peak = 0
	return p
}

func (m *memSampler) anonMax() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.all
}

func (m *memSampler) hwm() int64 {
	v, _ := statusField("VmHWM")
	return v
}

// statusField reads a "kB" field of /proc/self/status, in bytes.
func statusField(name string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return kb * 1024, err
	}
	return 0, errors.New(name + " not in /proc/self/status")
}
