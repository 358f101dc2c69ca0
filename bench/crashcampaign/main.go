package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/shelfdb/shelf/faissio"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

type config struct {
	trials, full, flips int
	seed                int64
	ops, lanes          map[string]bool
	timeout             time.Duration
	work                string
	keep                bool
	n, d, nlist, m      int
	chunkRows, chunks   int
}

// The operations of each lane.
var (
	killOps = []string{"add", "merge", "compact", "encode", "build", "train", "import-faiss"}
	fullOps = []string{"add", "merge", "compact", "encode", "build", "train", "import-faiss", "export-faiss", "stats", "search"}
	flipOps = []string{"wal", "sst", "data"}
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == verifyArg {
		os.Exit(verifyMain(os.Args[2], os.Args[3]))
	}
	var cfg config
	var ops, lanes string
	flag.IntVar(&cfg.trials, "trials", 1000, "kill -9 trials, spread over the operations")
	flag.IntVar(&cfg.full, "full", 150, "disk-full trials (as root, on a tmpfs)")
	flag.IntVar(&cfg.flips, "flips", 150, "corruption trials (a flipped byte in the WAL, a table, the data file)")
	flag.Int64Var(&cfg.seed, "seed", 1, "seed of the trials (and of the data)")
	flag.StringVar(&ops, "ops", "", "run only these operations, comma separated ("+strings.Join(fullOps, ",")+",wal,sst,data)")
	flag.StringVar(&lanes, "lanes", "kill,full,flip", "kinds of trials to run")
	flag.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "longest a command may run before it counts as a hang")
	flag.StringVar(&cfg.work, "work", "", "work directory (default: a new temporary one, removed at the end)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory")
	flag.IntVar(&cfg.n, "n", 20000, "base vectors")
	flag.IntVar(&cfg.d, "dim", 32, "dimension")
	flag.IntVar(&cfg.nlist, "nlist", 64, "lists (IVF<nlist>)")
	flag.IntVar(&cfg.m, "m", 8, "PQ sub-quantizers (PQ<m>)")
	flag.IntVar(&cfg.chunkRows, "chunk", 500, "vectors per add or merge")
	flag.IntVar(&cfg.chunks, "chunks", 48, "chunks for adds and merges before the index starts over")
	flag.Parse()
	cfg.lanes = set(lanes)
	if ops != "" {
		cfg.ops = set(ops)
	}
	c := &campaign{cfg: cfg, r: rand.New(rand.NewSource(cfg.seed)), stats: map[string]*opStats{}}
	code := c.main()
	os.Exit(code)
}

func set(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

type campaign struct {
	cfg   config
	r     *rand.Rand
	work  string
	shelf string // the binary under test
	self  string // this program, for the verify child

	nlist, cs, lnb int
	pool           vecio.Matrix // base rows, then the chunks
	refList        []int32      // reference list of every pool row
	refCode        []byte       // reference PQ code of every pool row
	queries        vecio.Matrix
	queriesPath    string
	basePath       string // base vectors (.fvecs)
	template       string // trained, empty index
	templateFAISS  string // its FAISS export: the reference model
	baseIndex      string // the base vectors built into an index
	baseFAISS      string // its FAISS export (import-faiss's input)
	buildSameModel bool   // shelf build trains the template's model

	live     string // the index of the kill lane, grown trial by trial
	liveIDs  idSet
	next     int // next chunk of the live index
	side     int // next chunk for trials on copies
	tmpfs    string
	noTmpfs  string
	dur      map[string]time.Duration
	stats    map[string]*opStats
	order    []string
	failures []string
}

// opStats is one row of the table.
type opStats struct {
	trials, killed, finished, refused, detected int
	survived, lost, wrong, panics, hangs        int
	unclear, failed, half                       int
	restored                                    int // survived by a restore from the published table
}

func (c *campaign) row(name string) *opStats {
	s := c.stats[name]
	if s == nil {
		s = &opStats{}
		c.stats[name] = s
		c.order = append(c.order, name)
	}
	return s
}

func (c *campaign) want(op string) bool { return c.cfg.ops == nil || c.cfg.ops[op] }

func (c *campaign) shelfRun(killAfter time.Duration, args ...string) cmdResult {
	return run(c.cfg.timeout, killAfter, c.shelf, args...)
}

func (c *campaign) main() int {
	start := time.Now()
	if err := c.setup(); err != nil {
		fmt.Fprintln(os.Stderr, "crashcampaign:", err)
		return 1
	}
	defer c.cleanup()
	if c.cfg.lanes["kill"] {
		c.killLane()
	}
	if c.cfg.lanes["full"] {
		c.fullLane()
	}
	if c.cfg.lanes["flip"] {
		c.flipLane()
	}
	c.report(time.Since(start))
	return 0
}

func (c *campaign) cleanup() {
	if c.tmpfs != "" {
		unmount(c.tmpfs)
	}
	if !c.cfg.keep && c.cfg.work == "" {
		os.RemoveAll(c.work)
	}
}

func (c *campaign) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
}

// setup builds the binary, writes the data, trains the template, builds
// the base index and computes the reference codes of every vector.
func (c *campaign) setup() error {
	cfg := c.cfg
	var err error
	if cfg.work != "" {
		c.work = cfg.work
		err = os.MkdirAll(c.work, 0o755)
	} else {
		c.work, err = os.MkdirTemp("", "crashcampaign-")
	}
	if err != nil {
		return err
	}
	if c.self, err = os.Executable(); err != nil {
		return err
	}
	c.shelf = filepath.Join(c.work, "shelf")
	c.logf("building %s", c.shelf)
	build := exec.Command("go", "build", "-o", c.shelf, "./tools/shelf")
	build.Dir, err = moduleRoot()
	if err != nil {
		return err
	}
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./tools/shelf: %v\n%s", err, out)
	}
	c.nlist = cfg.nlist
	total := cfg.n + c.nchunks()*cfg.chunkRows
	c.logf("data: %d x %d (%d base), IVF%d,PQ%d", total, cfg.d, cfg.n, cfg.nlist, cfg.m)
	c.pool = synth.Clustered(total, cfg.d, 4*cfg.nlist, cfg.seed)
	c.basePath = filepath.Join(c.work, "base.fvecs")
	if err := vecio.WriteFvecs(c.basePath, vecio.Matrix{N: cfg.n, D: cfg.d, Data: c.pool.Data[:cfg.n*cfg.d]}); err != nil {
		return err
	}
	c.queries = synth.Queries(20, cfg.d, 4*cfg.nlist, cfg.seed)
	c.queriesPath = filepath.Join(c.work, "queries.fvecs")
	if err := vecio.WriteFvecs(c.queriesPath, c.queries); err != nil {
		return err
	}
	c.template = filepath.Join(c.work, "template")
	if r := c.shelfRun(0, c.trainArgs("train", c.template)...); !r.ok() {
		return fmt.Errorf("train: %v", r)
	}
	c.baseIndex = filepath.Join(c.work, "base")
	if r := c.shelfRun(0, c.trainArgs("build", c.baseIndex)...); !r.ok() {
		return fmt.Errorf("build: %v", r)
	}
	c.templateFAISS = filepath.Join(c.work, "template.faiss")
	c.baseFAISS = filepath.Join(c.work, "base.faiss")
	for _, e := range [][2]string{{c.template, c.templateFAISS}, {c.baseIndex, c.baseFAISS}} {
		if r := c.shelfRun(0, "export-faiss", "--index", e[0], "--faiss", e[1], "--quiet"); !r.ok() {
			return fmt.Errorf("export-faiss: %v", r)
		}
	}
	// The reference: the template's model, in memory, encodes every row.
	ref, err := faissio.Read(c.templateFAISS)
	if err != nil {
		return err
	}
	c.cs = ref.Params().CodeSize()
	c.lnb = ref.TwoLayerCodeSize() - c.cs
	sa, err := ref.SAEncode(c.pool.Data, c.pool.N)
	if err != nil {
		return err
	}
	c.refList = make([]int32, c.pool.N)
	c.refCode = make([]byte, c.pool.N*c.cs)
	w := c.lnb + c.cs
	for i := 0; i < c.pool.N; i++ {
		var l int32
		for b := 0; b < c.lnb; b++ {
			l |= int32(sa[i*w+b]) << (8 * b)
		}
		c.refList[i] = l
		copy(c.refCode[i*c.cs:], sa[i*w+c.lnb:(i+1)*w])
	}
	if err := c.sameModel(); err != nil {
		return err
	}
	// Chunks: vectors and their ids, and their code blocks for merges.
	for k := 0; k < c.nchunks(); k++ {
		if err := c.writeChunk(k); err != nil {
			return err
		}
	}
	c.dur = map[string]time.Duration{}
	// Self-check: the base index is the reference, and so is a clean add,
	// merge and compaction, with the binary and the checks agreeing.
	c.live = filepath.Join(c.work, "live")
	c.resetLive()
	var v verdict
	base := idSet{}
	base.addRange(0, cfg.n)
	if _, _, ok := c.check(&v, c.baseIndex, base, nil, false); !ok || !v.sound() {
		return fmt.Errorf("the base index built by shelf build does not pass the checks: %v", v.notes)
	}
	for _, op := range []string{"add", "merge", "compact", "encode"} {
		before := c.liveIDs.clone()
		v, _, _ := c.writerTrial(op, 0)
		if !v.sound() || v.refused {
			return fmt.Errorf("a clean %s does not pass the checks: %v", op, v.notes)
		}
		if op != "compact" && len(c.liveIDs) != len(before)+cfg.chunkRows {
			return fmt.Errorf("a clean %s added %d vectors", op, len(c.liveIDs)-len(before))
		}
	}
	for _, op := range []string{"build", "train", "import-faiss"} {
		if v, _, _ := c.creatorTrial(op, 0); !v.sound() || v.refused {
			return fmt.Errorf("a clean %s does not pass the checks: %v", op, v.notes)
		}
	}
	c.stats = map[string]*opStats{}
	c.order = nil
	c.resetLive()
	if c.cfg.lanes["full"] {
		c.tmpfs = filepath.Join(c.work, "tmpfs")
		if err := mountTmpfs(c.tmpfs, "24m"); err != nil {
			c.noTmpfs = fmt.Sprintf("disk-full trials skipped: cannot mount a tmpfs (%v); run as root", err)
			c.tmpfs = ""
			c.logf("%s", c.noTmpfs)
		}
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run crashcampaign inside the shelf module")
	}
	return filepath.Dir(mod), nil
}

func (c *campaign) trainArgs(cmd, dir string) []string {
	return []string{cmd, "--data", c.basePath, "--index", dir,
		"--factory", fmt.Sprintf("IVF%d,PQ%d", c.cfg.nlist, c.cfg.m),
		"--seed", "1", "--train-size", "4096", "--quiet"}
}

// sameModel checks whether shelf build trains what shelf train does (the
// README says so): then built indexes are compared with the reference
// codes too.
func (c *campaign) sameModel() error {
	a, err := ivf.OpenReadOnly(c.template)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := ivf.OpenReadOnly(c.baseIndex)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := a.SameTraining(b); err != nil {
		return fmt.Errorf("shelf build and shelf train with the same data and seed trained different models: %v", err)
	}
	c.buildSameModel = true
	return nil
}

// nchunks is the number of chunks: those of the live index, then two
// per trial on a copy of it.
func (c *campaign) nchunks() int { return c.cfg.chunks + 2*(c.cfg.full+c.cfg.flips) + 4 }

func (c *campaign) chunkStart(k int) int { return c.cfg.n + k*c.cfg.chunkRows }

func (c *campaign) chunkPath(k int, ext string) string {
	return filepath.Join(c.work, "chunks", fmt.Sprintf("chunk%04d%s", k, ext))
}

func (c *campaign) writeChunk(k int) error {
	if err := os.MkdirAll(filepath.Join(c.work, "chunks"), 0o755); err != nil {
		return err
	}
	lo, n, d := c.chunkStart(k), c.cfg.chunkRows, c.cfg.d
	m := vecio.Matrix{N: n, D: d, Data: c.pool.Data[lo*d : (lo+n)*d]}
	if err := vecio.WriteFvecs(c.chunkPath(k, ".fvecs"), m); err != nil {
		return err
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(lo + i)
	}
	if err := vecio.WriteNpyInt64(c.chunkPath(k, ".ids.npy"), ids); err != nil {
		return err
	}
	return nil
}

// blocks returns the code blocks of chunk k (encoded once, by a clean run).
func (c *campaign) blocks(k int) (string, error) {
	dir := c.chunkPath(k, ".blocks")
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil {
		return dir, nil
	}
	os.RemoveAll(dir)
	r := c.shelfRun(0, "encode", "--index", c.template, "--data", c.chunkPath(k, ".fvecs"), "--out", dir,
		"--block-size", fmt.Sprint(c.cfg.chunkRows/2), "--quiet")
	if !r.ok() {
		return "", fmt.Errorf("encode chunk %d: %v", k, r)
	}
	return dir, os.WriteFile(filepath.Join(dir, ".done"), nil, 0o644)
}

// nextSide returns a chunk no index of the campaign holds: for trials on
// copies of the live index.
func (c *campaign) nextSide() int {
	k := c.cfg.chunks + c.side
	c.side++
	if k >= c.nchunks() {
		panic("crashcampaign: out of side chunks")
	}
	return k
}

// record adds the verdict of a trial of op (as named in the table).
func (c *campaign) record(name string, v *verdict, killed, finished, refusalOK bool) {
	s := c.row(name)
	s.trials++
	if killed {
		s.killed++
	}
	if finished {
		s.finished++
	}
	bad := !v.sound()
	if v.refused {
		if refusalOK {
			s.detected++
		} else {
			s.refused++
			bad = true
		}
	}
	s.lost += v.lost
	s.wrong += v.wrong
	s.panics += v.panics
	s.hangs += v.hangs
	s.unclear += v.unclear
	s.failed += v.failed
	s.half += v.half
	if v.restored && !bad && !v.refused {
		s.restored++
	}
	if !bad {
		s.survived++
	} else if s.trials-s.survived <= 3 {
		// The first three failures of each kind of trial.
		c.failures = append(c.failures, fmt.Sprintf("%s: %s", name, strings.Join(v.notes, "; ")))
	}
}

func (c *campaign) progress(lane string, i, n int) {
	if i%50 == 0 || i == n {
		c.logf("%s: %d/%d trials", lane, i, n)
	}
}

func (c *campaign) report(elapsed time.Duration) {
	var t opStats
	for _, s := range c.stats {
		t.trials += s.trials
		t.survived += s.survived
		t.lost += s.lost
		t.wrong += s.wrong
		t.panics += s.panics
		t.hangs += s.hangs
		t.refused += s.refused
		t.detected += s.detected
		t.unclear += s.unclear
		t.failed += s.failed
		t.half += s.half
		t.restored += s.restored
	}
	fmt.Printf("crash and fault campaign: seed %d, %d x %d vectors, IVF%d,PQ%d, %v\n",
		c.cfg.seed, c.cfg.n, c.cfg.d, c.cfg.nlist, c.cfg.m, elapsed.Round(time.Second))
	if c.noTmpfs != "" {
		fmt.Println(c.noTmpfs)
	}
	fmt.Printf("trials                     %d\n", t.trials)
	fmt.Printf("faults survived            %d\n", t.survived)
	fmt.Printf("acknowledged entries lost  %d\n", t.lost)
	fmt.Printf("silently wrong answers     %d\n", t.wrong)
	fmt.Printf("panic traces               %d\n", t.panics)
	fmt.Printf("hangs                      %d\n", t.hangs)
	fmt.Printf("refused to open            %d (after a kill or a full disk, where it must open)\n", t.refused)
	fmt.Printf("corruption detected        %d (a clear refusal, or shelf verify naming the damaged lists)\n", t.detected)
	fmt.Printf("restored at open           %d (lost commits restored from the published table; survived)\n", t.restored)
	fmt.Printf("unclear errors             %d\n", t.unclear)
	fmt.Printf("failures without a fault   %d\n", t.failed)
	fmt.Printf("half-made indexes          %d (an interrupted build, train or import left an index that opens, not whole)\n", t.half)
	fmt.Println()
	fmt.Printf("| trial | trials | killed | finished | survived | lost | wrong | refused | detected | panics | hangs | unclear | failed | half |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	names := append([]string(nil), c.order...)
	rank := map[string]int{"kill": 0, "full": 1, "flip": 2}
	sort.SliceStable(names, func(i, j int) bool {
		return rank[strings.Fields(names[i])[0]] < rank[strings.Fields(names[j])[0]]
	})
	for _, n := range names {
		s := c.stats[n]
		fmt.Printf("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n", n, s.trials, s.killed, s.finished,
			s.survived, s.lost, s.wrong, s.refused, s.detected, s.panics, s.hangs, s.unclear, s.failed, s.half)
	}
	if len(c.failures) > 0 {
		fmt.Println()
		fmt.Printf("failures (the first three of each kind; %d trials did not survive):\n", t.trials-t.survived)
		for _, f := range c.failures {
			fmt.Println("  " + f)
		}
	}
}
