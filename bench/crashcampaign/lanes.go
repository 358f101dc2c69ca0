package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/shelfdb/shelf/faissio"
)

// resetLive makes the live index a fresh copy of the base index.
func (c *campaign) resetLive() {
	if err := replaceDir(c.baseIndex, c.live); err != nil {
		panic(err)
	}
	c.liveIDs = idSet{}
	c.liveIDs.addRange(0, c.cfg.n)
	c.next = 0
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("crashcampaign: %v", err))
	}
}

func (c *campaign) chunkIDs(k int) idSet {
	s := idSet{}
	s.addRange(c.chunkStart(k), c.cfg.chunkRows)
	return s
}

// learn keeps a running estimate of how long op takes, for the moment of
// the next kill.
func (c *campaign) learn(op string, r cmdResult) {
	if !r.ok() || r.killed {
		return
	}
	if old, ok := c.dur[op]; ok {
		c.dur[op] = (7*old + 3*r.dur) / 10
	} else {
		c.dur[op] = r.dur
	}
}

// killAt picks a moment in the run of op: uniform over 1.15 times its
// usual duration, so some runs finish first.
func (c *campaign) killAt(op string) time.Duration {
	d := c.dur[op]
	if d <= 0 {
		d = 100 * time.Millisecond
	}
	return time.Duration(c.r.Int63n(int64(d)*115/100)) + time.Microsecond
}

// writerOp runs op (add, merge, compact, encode) on the index dir with
// chunk k, killed after killAfter (0: not killed); encode writes its
// blocks to outDir, running again to the end when it did not finish,
// and merges them. It returns the
// result that decides whether the chunk is acknowledged (for encode,
// the merge that follows it) and the result of op itself.
func (c *campaign) writerOp(v *verdict, op, dir string, k int, killAfter time.Duration, outDir string) (ack bool, first cmdResult) {
	start := fmt.Sprint(c.chunkStart(k))
	switch op {
	case "add":
		r := c.shelfRun(killAfter, "add", "--index", dir, "--data", c.chunkPath(k, ".fvecs"), "--ids", c.chunkPath(k, ".ids.npy"), "--quiet")
		return v.command(r), r
	case "merge":
		blocks, err := c.blocks(k)
		must(err)
		r := c.shelfRun(killAfter, "merge", "--index", dir, "--blocks", blocks, "--id-shift", start, "--quiet")
		return v.command(r), r
	case "compact":
		r := c.shelfRun(killAfter, "compact", "--index", dir, "--quiet")
		return v.command(r), r
	case "encode":
		args := []string{"encode", "--index", dir, "--data", c.chunkPath(k, ".fvecs"), "--out", outDir,
			"--block-size", fmt.Sprint(max(1, c.cfg.chunkRows/10)), "--quiet"}
		r := c.shelfRun(killAfter, args...)
		if !v.command(r) {
			// Run it again to the end: it keeps the finished blocks and
			// re-encodes damaged ones.
			if r2 := c.shelfRun(0, args...); !v.command(r2) {
				v.failed++
				v.note("encode again after %v: %v", r, r2)
				return false, r
			}
		}
		m := c.shelfRun(0, "merge", "--index", dir, "--blocks", outDir, "--id-shift", start, "--quiet")
		if !v.command(m) {
			v.failed++
			v.note("merge of the encoded blocks: %v", m)
			return false, r
		}
		return true, r
	}
	panic("unknown operation " + op)
}

// writerTrial runs op on the live index, killed after killAfter (0: not
// killed), checks the index, and moves the live index on (or back to
// where it was, when the trial went wrong).
func (c *campaign) writerTrial(op string, killAfter time.Duration) (v *verdict, killed, finished bool) {
	if c.next >= c.cfg.chunks {
		c.resetLive()
	}
	backup := c.live + ".bak"
	must(replaceDir(c.live, backup))
	v = &verdict{}
	k := -1
	inflight := idSet{}
	if op != "compact" {
		k = c.next
		c.next++
		inflight = c.chunkIDs(k)
	}
	enc := filepath.Join(c.work, "enc")
	must(os.RemoveAll(enc))
	ack, r := c.writerOp(v, op, c.live, k, killAfter, enc)
	c.learn(op, r)
	if !r.ok() && !r.killed && r.clear() && op != "encode" {
		v.failed++
		v.note("%s failed with no fault: %v", op, r)
	}
	want, maybe := c.liveIDs.clone(), idSet{}
	if ack {
		for id := range inflight {
			want[id] = struct{}{}
		}
	} else {
		maybe = inflight
	}
	present, _, ok := c.check(v, c.live, want, maybe, false)
	if ok && v.sound() {
		c.liveIDs = present
	} else {
		must(replaceDir(backup, c.live))
	}
	return v, r.killed, r.ok()
}

// creatorArgs is the command line of a command that makes an index.
func (c *campaign) creatorArgs(op, dir string) (args []string, want idSet) {
	want = idSet{}
	switch op {
	case "build":
		want.addRange(0, c.cfg.n)
		return c.trainArgs("build", dir), want
	case "train":
		return c.trainArgs("train", dir), want
	case "import-faiss":
		want.addRange(0, c.cfg.n)
		return []string{"import-faiss", "--faiss", c.baseFAISS, "--index", dir, "--quiet"}, want
	}
	panic("unknown operation " + op)
}

// creatorTrial runs build, train or import-faiss into a new directory,
// killed after killAfter (0: not killed). A finished command must leave
// the whole index; an interrupted one an index that refuses to open, or
// opens whole; then the same command must finish (or refuse clearly).
func (c *campaign) creatorTrial(op string, killAfter time.Duration) (v *verdict, killed, finished bool) {
	v = &verdict{}
	dir := filepath.Join(c.work, "new")
	must(os.RemoveAll(dir))
	args, want := c.creatorArgs(op, dir)
	r := c.shelfRun(killAfter, args...)
	c.learn(op, r)
	c.afterCreate(v, op, dir, args, want, r)
	return v, r.killed, r.ok()
}

func (c *campaign) afterCreate(v *verdict, op, dir string, args []string, want idSet, r cmdResult) {
	if v.command(r) {
		c.check(v, dir, want, nil, false)
		return
	}
	c.checkLeftover(v, dir, want)
	r2 := c.shelfRun(0, args...)
	if v.command(r2) {
		c.check(v, dir, want, nil, false)
	} else {
		v.note("%s again after %s: %v", op, r, r2)
	}
}

// checkLeftover examines what an interrupted build, train or import left:
// an index that opens must be whole.
func (c *campaign) checkLeftover(v *verdict, dir string, want idSet) {
	st := c.shelfRun(0, "stats", "--index", dir, "--json")
	if !v.command(st) {
		return // refused, clearly: no index there
	}
	var sub verdict
	present, _, ok := c.check(&sub, dir, idSet{}, want, false)
	v.panics += sub.panics
	v.hangs += sub.hangs
	v.unclear += sub.unclear
	v.wrong += sub.wrong
	v.notes = append(v.notes, sub.notes...)
	if ok && len(present) != len(want) {
		v.half++
		v.note("an interrupted %s left an index that opens with %d of %d vectors", filepath.Base(dir), len(present), len(want))
	}
}

var creators = map[string]bool{"build": true, "train": true, "import-faiss": true}

func (c *campaign) killLane() {
	weights := map[string]int{"add": 3, "merge": 3, "compact": 2, "encode": 2, "build": 1, "train": 1, "import-faiss": 1}
	var ops []string
	for _, op := range killOps {
		if c.want(op) {
			for i := 0; i < weights[op]; i++ {
				ops = append(ops, op)
			}
		}
	}
	if len(ops) == 0 {
		return
	}
	for i := 0; i < c.cfg.trials; i++ {
		op := ops[c.r.Intn(len(ops))]
		at := c.killAt(op)
		var v *verdict
		var killed, finished bool
		if creators[op] {
			v, killed, finished = c.creatorTrial(op, at)
		} else {
			v, killed, finished = c.writerTrial(op, at)
		}
		c.record("kill "+op, v, killed, finished, false)
		c.progress("kill", i+1, c.cfg.trials)
	}
}

// pickFree is how much room a disk-full trial leaves: none, or from 4 KiB
// to 4 MiB (log-uniform), so the disk fills at every stage of a command.
func (c *campaign) pickFree() int64 {
	if c.r.Intn(5) == 0 {
		return 0
	}
	return int64(math.Exp2(12+10*c.r.Float64())) + c.r.Int63n(4096)
}

// clearTmpfs removes everything from the tmpfs.
func (c *campaign) clearTmpfs() {
	ents, _ := os.ReadDir(c.tmpfs)
	for _, e := range ents {
		must(os.RemoveAll(filepath.Join(c.tmpfs, e.Name())))
	}
}

func (c *campaign) fullLane() {
	if c.tmpfs == "" {
		return
	}
	var ops []string
	for _, op := range fullOps {
		if c.want(op) {
			ops = append(ops, op)
		}
	}
	if len(ops) == 0 {
		return
	}
	for i := 0; i < c.cfg.full; i++ {
		op := ops[i%len(ops)]
		v := c.fullTrial(op, c.pickFree())
		c.record("full "+op, v, false, false, false)
		c.progress("full", i+1, c.cfg.full)
	}
}

// fullTrial runs op with the index (or its output) on the tmpfs filled up
// to free bytes, then frees the disk and checks the index.
func (c *campaign) fullTrial(op string, free int64) *verdict {
	v := &verdict{}
	c.clearTmpfs()
	idx := filepath.Join(c.tmpfs, "idx")
	if !creators[op] {
		must(copyDir(c.live, idx))
	}
	want := c.liveIDs.clone()
	k := c.nextSide()
	if op == "merge" {
		_, err := c.blocks(k)
		must(err)
	}
	ballast, err := fill(c.tmpfs, free)
	must(err)
	left := freeBytes(c.tmpfs)
	v.note("free %d bytes", left)
	var ack bool
	var r cmdResult
	newDir := filepath.Join(c.tmpfs, "new")
	var createArgs []string
	var createWant idSet
	switch op {
	case "add", "merge", "compact":
		ack, r = c.writerOp(v, op, idx, k, 0, "")
	case "encode":
		// The blocks are finished and merged below, with room again.
		r = c.shelfRun(0, "encode", "--index", idx, "--data", c.chunkPath(k, ".fvecs"), "--out", filepath.Join(c.tmpfs, "enc"),
			"--block-size", fmt.Sprint(max(1, c.cfg.chunkRows/10)), "--quiet")
		v.command(r)
	case "build", "train", "import-faiss":
		createArgs, createWant = c.creatorArgs(op, newDir)
		r = c.shelfRun(0, createArgs...)
		ack = r.ok()
	case "export-faiss":
		r = c.shelfRun(0, "export-faiss", "--index", idx, "--faiss", filepath.Join(c.tmpfs, "out.faiss"), "--quiet")
		ack = v.command(r)
	case "stats":
		r = c.shelfRun(0, "stats", "--index", idx, "--json")
		if v.command(r) {
			if n, err := ntotalOf(r.stdout); err != nil || n != int64(len(want)) {
				v.wrong++
				v.note("stats on a full disk: ntotal %d (%v), want %d", n, err, len(want))
			}
		} else {
			v.refused = true
			v.note("read-only stats on a full disk: %v", r)
		}
	case "search":
		var sub verdict
		c.searchCheck(&sub, idx, want)
		if sub.failed > 0 {
			v.refused = true
		}
		sub.failed = 0
		v.wrong += sub.wrong
		v.panics += sub.panics
		v.hangs += sub.hangs
		v.notes = append(v.notes, sub.notes...)
	}
	must(os.Remove(ballast))
	if r.args != nil && !r.ok() && !r.clear() && !r.hung && !r.trace() {
		v.unclear++
		v.note("unclear: %v", r)
	}
	switch op {
	case "add", "merge", "compact":
		maybe := idSet{}
		if op != "compact" {
			if ack {
				for id := range c.chunkIDs(k) {
					want[id] = struct{}{}
				}
			} else {
				maybe = c.chunkIDs(k)
			}
		}
		c.check(v, idx, want, maybe, false)
	case "encode":
		// With room again, finish the blocks and merge them.
		ack, _ = c.writerOp(v, "encode", idx, k, 0, filepath.Join(c.tmpfs, "enc"))
		if ack {
			for id := range c.chunkIDs(k) {
				want[id] = struct{}{}
			}
		}
		c.check(v, idx, want, nil, false)
	case "build", "train", "import-faiss":
		c.afterCreate(v, op, newDir, createArgs, createWant, r)
	case "export-faiss":
		if ack {
			ix, err := faissio.Read(filepath.Join(c.tmpfs, "out.faiss"))
			if err != nil || ix.NTotal() != int64(len(want)) {
				v.wrong++
				v.note("export-faiss on a full disk exited 0, its file: %v", err)
			}
		}
		c.check(v, idx, want, nil, false)
	case "stats", "search":
		c.check(v, idx, want, nil, false)
	}
	return v
}

func (c *campaign) flipLane() {
	var targets []string
	for _, t := range flipOps {
		if c.want(t) {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		return
	}
	for i := 0; i < c.cfg.flips; i++ {
		t := targets[i%len(targets)]
		v := c.flipTrial(t)
		c.record("flip "+t, v, false, false, true)
		c.progress("flip", i+1, c.cfg.flips)
	}
}

// flipFile picks the file a flip of kind t goes to, in the index dir.
func (c *campaign) flipFile(dir, t string) string {
	var pattern string
	switch t {
	case "wal":
		pattern = "lists/meta/*.log"
	case "sst":
		pattern = "lists/meta/*.sst"
	case "data":
		pattern = "lists/lists.*.data"
	}
	files, _ := filepath.Glob(filepath.Join(dir, pattern))
	var ok []string
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Size() > 0 {
			ok = append(ok, f)
		}
	}
	if len(ok) == 0 {
		return ""
	}
	sort.Strings(ok)
	if t == "wal" {
		return ok[len(ok)-1] // the one the last commits went to
	}
	return ok[c.r.Intn(len(ok))]
}

// flipTrial adds a chunk to a copy of the live index (acknowledged), flips
// one byte of a file of kind t, then reads, searches and adds to it.
func (c *campaign) flipTrial(t string) *verdict {
	v := &verdict{}
	dir := filepath.Join(c.work, "flip")
	must(replaceDir(c.live, dir))
	want := c.liveIDs.clone()
	k := c.nextSide()
	if ack, r := c.writerOp(v, "add", dir, k, 0, ""); ack {
		for id := range c.chunkIDs(k) {
			want[id] = struct{}{}
		}
	} else {
		v.failed++
		v.note("add before the flip: %v", r)
	}
	file := c.flipFile(dir, t)
	if file == "" {
		v.failed++
		v.note("no %s file in %s", t, dir)
		return v
	}
	fi, err := os.Stat(file)
	must(err)
	off := c.r.Int63n(fi.Size())
	must(flipByte(file, off, byte(1+c.r.Intn(255))))
	rel, _ := filepath.Rel(dir, file)
	v.note("flipped byte %d of %s (%d bytes)", off, rel, fi.Size())
	if t == "data" {
		// A user who suspects damage runs shelf verify: a flip it reports
		// is detected; one it does not report must not change answers.
		vr := c.shelfRun(0, "verify", "--index", dir, "--quiet")
		if v.command(vr) {
			if !strings.Contains(vr.stdout, "lists verified") {
				v.failed++
				v.note("verify exited 0 without saying so: %q", strings.TrimSpace(vr.stdout))
			}
		} else if !vr.hung && !vr.trace() {
			// One line per damaged list on stdout, or a clear refusal
			// (a header it cannot open); v.command counted anything else.
			lines := strings.Split(strings.TrimSpace(vr.stdout), "\n")
			if vr.exit == 1 && (strings.HasPrefix(lines[0], "list ") || vr.clear()) {
				v.refused = true
				v.note("shelf verify: %s (%d lines); %s", lines[0], len(lines), strings.TrimSpace(vr.stderr))
			}
			return v
		} else {
			return v
		}
	}
	present, bad, ok := c.check(v, dir, want, nil, true)
	if !ok {
		return v
	}
	k2 := c.nextSide()
	if ack, r := c.writerOp(v, "add", dir, k2, 0, ""); ack {
		for id := range c.chunkIDs(k2) {
			present[id] = struct{}{}
		}
		c.check(v, dir, present, nil, true, bad)
	} else if r.clear() {
		v.note("add after the flip refused: %s", strings.TrimSpace(r.stderr))
	}
	return v
}
