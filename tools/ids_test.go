package tools

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// idsHeld returns how many times each id occurs in the index in dir, with
// its ntotal and next id.
func idsHeld(t *testing.T, dir string) (map[int64]int, int64, int64) {
	t.Helper()
	ix, err := ivf.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	count := map[int64]int{}
	for _, list := range encReadLists(t, dir) {
		for _, e := range list {
			count[e.id]++
		}
	}
	return count, ix.NTotal(), ix.NextID()
}

// TestIDsNeverTwice replays the parallel-build session that used to give
// ten ids twice: an index merged with a block directory and a copy of
// itself, then added to.
func TestIDsNeverTwice(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	base, more := filepath.Join(dir, "base.fvecs"), filepath.Join(dir, "more.fvecs")
	if err := vecio.WriteFvecs(base, synth.Clustered(3000, 16, 20, 1)); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteFvecs(more, synth.Clustered(10, 16, 20, 2)); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(dir, "I")
	encOK(t, bin, "build", "--data", base, "--index", idx, "--factory", "IVF16,PQ4", "--quiet")
	other := filepath.Join(dir, "O")
	encCopyDir(t, idx, other)
	blocks := filepath.Join(dir, "B")
	encOK(t, bin, "encode", "--index", idx, "--data", more, "--out", blocks, "--shard", "0/1", "--quiet")
	pristine := filepath.Join(dir, "pristine")
	encCopyDir(t, idx, pristine)

	// The merge that used to hand ids 0..2999 and 0..9 out again is
	// refused before anything is written, naming the ids and the remedy.
	code, _, errOut := encRun(t, bin, "merge", "--index", idx, "--blocks", blocks, "--from", other, "--quiet")
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "duplicate ids") ||
		!strings.Contains(errOut, "10 ids") || !strings.Contains(errOut, "--id-shift auto") {
		t.Fatalf("merge giving ids twice: exit %d, stderr %q", code, errOut)
	}
	t.Logf("refused: %s", strings.TrimSpace(errOut))
	if _, n, next := idsHeld(t, idx); n != 3000 || next != 3000 {
		t.Fatalf("refused merge changed the index: ntotal %d, next id %d", n, next)
	}

	// With --id-shift auto each source is numbered after the index's ids:
	// the blocks get 3000..3009, the copy 3010..6009, later adds 6010 on.
	out := encOK(t, bin, "merge", "--index", idx, "--blocks", blocks, "--from", other, "--id-shift", "auto", "--quiet")
	if !strings.Contains(out, "holds 6010 vectors, next id 6010") {
		t.Fatalf("merge summary: %q", out)
	}
	encOK(t, bin, "add", "--index", idx, "--data", more, "--quiet")
	count, n, next := idsHeld(t, idx)
	if n != 6020 || next != 6020 || int64(len(count)) != n {
		t.Fatalf("after merge and add: ntotal %d, next id %d, %d distinct ids", n, next, len(count))
	}
	for id := int64(0); id < n; id++ {
		if count[id] != 1 {
			t.Fatalf("id %d held %d times", id, count[id])
		}
	}
	// The vectors just added come back under their new ids.
	res := filepath.Join(dir, "ids.ivecs")
	encOK(t, bin, "search", "--index", idx, "--queries", more, "--k", "3", "--nprobe", "16", "--out", res)
	nq, k, got, err := vecio.ReadInt32(res)
	if err != nil || nq != 10 || k != 3 {
		t.Fatalf("%s: %d x %d, %v", res, nq, k, err)
	}
	for q := 0; q < nq; q++ {
		row := got[q*k : (q+1)*k]
		if !(row[0] == int32(3000+q) || row[0] == int32(6010+q)) || !(row[1] == int32(3000+q) || row[1] == int32(6010+q)) {
			t.Fatalf("query %d (vector %d, merged as %d and added as %d) found %v", q, q, 3000+q, 6010+q, row)
		}
	}

	// Duplicates asked for explicitly: merged as they are, and the next
	// sequential id still comes after all of them.
	dup := filepath.Join(dir, "dup")
	encCopyDir(t, pristine, dup)
	encOK(t, bin, "merge", "--index", dup, "--blocks", blocks, "--from", other, "--allow-duplicate-ids", "--quiet")
	encOK(t, bin, "add", "--index", dup, "--data", more, "--quiet")
	count, n, next = idsHeld(t, dup)
	if n != 6020 || next != 3010 {
		t.Fatalf("duplicates allowed: ntotal %d, next id %d", n, next)
	}
	for id := int64(3000); id < 3010; id++ {
		if count[id] != 1 {
			t.Fatalf("added id %d held %d times", id, count[id])
		}
	}
	// Merging the same blocks again skips them (they are recorded as
	// merged), and a fixed shift that still collides is refused.
	code, _, errOut = encRun(t, bin, "merge", "--index", dup, "--blocks", blocks, "--quiet")
	if _, n, _ := idsHeld(t, dup); code != 0 || !strings.Contains(errOut, "merged before") || n != 6020 {
		t.Fatalf("second merge of the same blocks: exit %d, ntotal %d, stderr %q", code, n, errOut)
	}
	code, _, errOut = encRun(t, bin, "merge", "--index", dup, "--from", other, "--id-shift", "5", "--quiet")
	if code != 1 || !strings.Contains(errOut, "duplicate ids") {
		t.Fatalf("colliding fixed shift: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := encRun(t, bin, "merge", "--index", dup, "--blocks", blocks, "--id-shift", "x"); code != 2 {
		t.Fatalf("--id-shift x: exit %d, want a usage error", code)
	}
}

// TestParallelBuildMatchesBuild runs the parallel build users run on a
// cluster (train, encode in two processes at once, merge) and checks it
// gives the index shelf build gives: the same ids and codes in every list
// and the same search results.
func TestParallelBuildMatchesBuild(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "base.fvecs")
	queries := filepath.Join(dir, "q.fvecs")
	if err := vecio.WriteFvecs(data, synth.Clustered(12000, 24, 40, 7)); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteFvecs(queries, synth.Clustered(50, 24, 40, 8)); err != nil {
		t.Fatal(err)
	}
	built := filepath.Join(dir, "built")
	encOK(t, bin, "build", "--data", data, "--index", built, "--factory", "IVF32,PQ8", "--seed", "3", "--quiet")

	par := filepath.Join(dir, "parallel")
	out := encOK(t, bin, "train", "--data", data, "--index", par, "--factory", "IVF32,PQ8", "--seed", "3", "--quiet")
	if !strings.Contains(out, "holds no vectors") {
		t.Fatalf("train summary: %q", out)
	}
	if _, n, next := idsHeld(t, par); n != 0 || next != 0 {
		t.Fatalf("trained index: ntotal %d, next id %d", n, next)
	}
	blocks := filepath.Join(dir, "blocks")
	var procs []*bytes.Buffer
	var cmds []interface{ Wait() error }
	for _, shard := range []string{"0/2", "1/2"} {
		var errOut bytes.Buffer
		cmd := encCmd(bin, "encode", "--index", par, "--data", data, "--out", blocks, "--block-size", "1000", "--shard", shard, "--workers", "1", "--quiet")
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs, cmds = append(procs, &errOut), append(cmds, cmd)
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("encode shard %d: %v\n%s", i, err, procs[i])
		}
	}
	encOK(t, bin, "merge", "--index", par, "--blocks", blocks, "--quiet")
	encSameLists(t, "train + encode + merge vs build", encReadLists(t, par), encReadLists(t, built))
	if _, n, next := idsHeld(t, par); n != 12000 || next != 12000 {
		t.Fatalf("parallel build: ntotal %d, next id %d", n, next)
	}
	res := func(idx string) []byte {
		path := filepath.Join(dir, filepath.Base(idx)+".ivecs")
		encOK(t, bin, "search", "--index", idx, "--queries", queries, "--k", "10", "--nprobe", "4", "--out", path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(res(par), res(built)) {
		t.Fatal("search results of the parallel build differ from shelf build's")
	}
	// train refuses a directory in use before training.
	if code, _, errOut := encRun(t, bin, "train", "--data", data, "--index", par, "--factory", "IVF32,PQ8"); code != 1 || !strings.Contains(errOut, "already holds an index") {
		t.Fatalf("train into an index: exit %d, stderr %q", code, errOut)
	}
}

// TestBuildKilledIsReplaced kills shelf build at moments spread over its
// run and runs it again: the directory it leaves is never an index with
// part of the data (no model until every vector is in and compacted), and
// the re-run replaces it.
func TestBuildKilledIsReplaced(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "base.fvecs")
	if err := vecio.WriteFvecs(data, synth.Clustered(60000, 32, 50, 3)); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(dir, "idx")
	args := []string{"build", "--data", data, "--index", idx, "--factory", "IVF64,PQ8", "--quiet"}
	for _, delay := range []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond} {
		os.RemoveAll(idx)
		cmd := encCmd(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Training done, the index directory being written: then wait
		// delay more.
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if _, err := os.Stat(idx); err == nil {
				break
			}
		}
		time.Sleep(delay)
		cmd.Process.Kill()
		cmd.Wait()
		if ix, err := ivf.OpenReadOnly(idx); err == nil {
			n := ix.NTotal()
			ix.Close()
			if n != 60000 {
				t.Fatalf("killed after %v: an index with %d of 60000 vectors", delay, n)
			}
			t.Logf("kill after %v: the build had finished", delay)
			continue
		}
		st, _ := os.ReadDir(idx)
		t.Logf("kill after %v: not an index (%d entries left), built again", delay, len(st))
		encOK(t, bin, args...)
		if _, n, next := idsHeld(t, idx); n != 60000 || next != 60000 {
			t.Fatalf("re-run after a kill at %v: ntotal %d, next id %d", delay, n, next)
		}
	}
}
