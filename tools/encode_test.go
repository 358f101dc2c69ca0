package tools

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// encEntry is one inverted-list entry as read back from an index.
type encEntry struct {
	id   int64
	code string
}

// encTrained trains an IVF64,PQ8 index on data and writes it, empty,
// to dir.
func encTrained(t *testing.T, data vecio.Matrix, dir string, seed int64) {
	t.Helper()
	ix, err := ivf.NewFromFactory("IVF64,PQ8", data.D, ivf.L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(data.Data, data.N, &ivf.TrainOptions{Seed: seed}); err != nil {
		t.Fatal(err)
	}
	if err := ix.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
}

// encCopyDir copies a closed index directory (regular files, recursively).
func encCopyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// encReadLists returns every list of the index in dir, in stored order.
func encReadLists(t *testing.T, dir string) [][]encEntry {
	t.Helper()
	ix, err := ivf.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	snap, err := ix.Lists().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	cs := snap.CodeSize()
	out := make([][]encEntry, snap.NumLists())
	for l := range out {
		ids, codes, err := snap.ReadList(l)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			out[l] = append(out[l], encEntry{id, string(codes[i*cs : (i+1)*cs])})
		}
	}
	return out
}

// encSameLists checks that two indexes hold the same ids with the same codes
// in the same order in every list.
func encSameLists(t *testing.T, what string, got, want [][]encEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d lists, want %d", what, len(got), len(want))
	}
	total := 0
	for l := range want {
		if len(got[l]) != len(want[l]) {
			t.Fatalf("%s: list %d has %d entries, want %d", what, l, len(got[l]), len(want[l]))
		}
		for i := range want[l] {
			if got[l][i] != want[l][i] {
				t.Fatalf("%s: list %d entry %d is id %d, want id %d (or codes differ)", what, l, i, got[l][i].id, want[l][i].id)
			}
		}
		total += len(want[l])
	}
	if total == 0 {
		t.Fatalf("%s: both indexes are empty", what)
	}
}

// encCmd is the command running the binary with args.
func encCmd(bin string, args ...string) *exec.Cmd { return exec.Command(bin, args...) }

// encRun runs the binary and returns its exit code, stdout and stderr.
func encRun(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := encCmd(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func encOK(t *testing.T, bin string, args ...string) string {
	t.Helper()
	code, out, errOut := encRun(t, bin, args...)
	if code != 0 {
		t.Fatalf("shelf %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// encSameFiles checks that two block directories hold byte-identical files.
func encSameFiles(t *testing.T, got, want string) {
	t.Helper()
	wf, _ := filepath.Glob(filepath.Join(want, "*"))
	gf, _ := filepath.Glob(filepath.Join(got, "*"))
	if len(wf) == 0 || len(gf) != len(wf) {
		t.Fatalf("%s holds %d files, %s holds %d", got, len(gf), want, len(wf))
	}
	for _, w := range wf {
		a, err := os.ReadFile(filepath.Join(got, filepath.Base(w)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(w)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs from %s", filepath.Join(got, filepath.Base(w)), w)
		}
	}
}

// blockName is the file name of block b.
func blockName(b int64) string { return filepath.Base(ivf.BlockPath("", b)) }

func TestEncodeMerge(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	data := synth.Clustered(20000, 32, 100, 1)
	fv := filepath.Join(dir, "base.fvecs")
	if err := vecio.WriteFvecs(fv, data); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	encTrained(t, data, empty, 1)
	fresh := func(name string) string {
		d := filepath.Join(dir, name)
		encCopyDir(t, empty, d)
		return d
	}

	// What adding the vectors one by one gives, ids = row numbers.
	added := fresh("added")
	ix, err := ivf.Open(added, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(data.Data, data.N); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	want := encReadLists(t, added)

	// 1. Encode into 7 blocks, merge: the same lists as Add, entry for
	// entry and in the same order (blocks merge in row order).
	blocks := filepath.Join(dir, "blocks")
	out := encOK(t, bin, "encode", "--index", empty, "--data", fv, "--out", blocks, "--block-size", "3000", "--quiet")
	if !strings.Contains(out, "7 blocks written, 0 skipped") {
		t.Fatalf("encode summary: %q", out)
	}
	merged := fresh("merged")
	out = encOK(t, bin, "merge", "--index", merged, "--blocks", blocks, "--quiet")
	if !strings.Contains(out, "20000 vectors merged (7 blocks") || !strings.Contains(out, "MB/s") {
		t.Fatalf("merge summary: %q", out)
	}
	encSameLists(t, "encode + merge vs add", encReadLists(t, merged), want)

	// Encoding again skips every block.
	out = encOK(t, bin, "encode", "--index", empty, "--data", fv, "--out", blocks, "--block-size", "3000", "--quiet")
	if !strings.Contains(out, "0 blocks written, 7 skipped") {
		t.Fatalf("second encode: %q", out)
	}

	// 3. Three shards into one directory: the same blocks, the same index.
	sharded := filepath.Join(dir, "sharded")
	for _, s := range []string{"0/3", "1/3", "2/3"} {
		encOK(t, bin, "encode", "--index", empty, "--data", fv, "--out", sharded, "--block-size", "3000", "--shard", s, "--workers", "2", "--quiet")
	}
	encSameFiles(t, sharded, blocks)
	m3 := fresh("m3")
	encOK(t, bin, "merge", "--index", m3, "--blocks", sharded, "--quiet")
	encSameLists(t, "three shards vs one", encReadLists(t, m3), want)

	// --headroom: the same lists, in slots with room to spare.
	mh := fresh("mh")
	encOK(t, bin, "merge", "--index", mh, "--blocks", blocks, "--headroom", "0.5", "--quiet")
	encSameLists(t, "merge with headroom", encReadLists(t, mh), want)

	// --from: merging the merged index into an empty one copies it.
	mf := fresh("mf")
	encOK(t, bin, "merge", "--index", mf, "--from", merged, "--quiet")
	encSameLists(t, "--from", encReadLists(t, mf), want)

	// 2. Resume: kill an encode after its first block and run it again:
	// it skips the finished blocks and ends with the same files as an
	// uninterrupted run.
	whole := filepath.Join(dir, "whole")
	encOK(t, bin, "encode", "--index", empty, "--data", fv, "--out", whole, "--block-size", "100", "--workers", "1", "--quiet")
	resumed := filepath.Join(dir, "resumed")
	cmd := exec.Command(bin, "encode", "--index", empty, "--data", fv, "--out", resumed, "--block-size", "100", "--workers", "1", "--quiet")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(resumed, blockName(0))); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	done, _ := filepath.Glob(filepath.Join(resumed, "block-*.codes"))
	t.Logf("killed encode had finished %d of 200 blocks", len(done))
	if len(done) == 0 {
		t.Fatal("no block file appeared")
	}
	out = encOK(t, bin, "encode", "--index", empty, "--data", fv, "--out", resumed, "--block-size", "100", "--workers", "1", "--quiet")
	if want := fmt.Sprintf("%d blocks written, %d skipped", 200-len(done), len(done)); !strings.Contains(out, want) {
		t.Fatalf("resumed encode: %q, want %q", out, want)
	}
	encSameFiles(t, resumed, whole)

	// A truncated block, a damaged one, a missing one and a stale *.tmp
	// (overwritten by the block's writer): three blocks encoded again.
	b, _ := os.ReadFile(filepath.Join(resumed, blockName(7)))
	os.WriteFile(filepath.Join(resumed, blockName(7)), b[:len(b)/2], 0o644)
	b, _ = os.ReadFile(filepath.Join(resumed, blockName(0)))
	b[100] ^= 1
	os.WriteFile(filepath.Join(resumed, blockName(0)), b, 0o644)
	os.Remove(filepath.Join(resumed, blockName(150)))
	os.WriteFile(filepath.Join(resumed, blockName(150)+".tmp"), []byte("junk"), 0o644)
	code, out, errOut := encRun(t, bin, "encode", "--index", empty, "--data", fv, "--out", resumed, "--block-size", "100", "--workers", "1", "--quiet")
	if code != 0 || strings.Count(errOut, "encoding it again") != 2 || !strings.Contains(out, "3 blocks written, 197 skipped") {
		t.Fatalf("encode over damaged blocks: exit %d\n%s%s", code, out, errOut)
	}
	encSameFiles(t, resumed, whole)

	// 4. Errors.
	other := filepath.Join(dir, "other")
	encTrained(t, synth.Clustered(20000, 32, 100, 2), other, 2)
	otherBlocks := filepath.Join(dir, "otherblocks")
	encOK(t, bin, "encode", "--index", other, "--data", fv, "--out", otherBlocks, "--block-size", "10000", "--quiet")
	code, _, errOut = encRun(t, bin, "merge", "--index", fresh("e1"), "--blocks", otherBlocks)
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, blockName(0)) || !strings.Contains(errOut, "another training") {
		t.Fatalf("merge of another training's blocks: exit %d, stderr %q", code, errOut)
	}
	t.Logf("another training: %s", strings.TrimSpace(errOut))
	code, _, errOut = encRun(t, bin, "merge", "--index", fresh("e2"), "--from", other)
	if code != 1 || !strings.Contains(errOut, "incompatible") {
		t.Fatalf("merge --from another training: exit %d, stderr %q", code, errOut)
	}
	// Encoding with another index into a directory of this training's
	// blocks does not skip them: it says so and encodes them again.
	mixed := filepath.Join(dir, "mixed")
	encCopyDir(t, blocks, mixed)
	code, _, errOut = encRun(t, bin, "encode", "--index", other, "--data", fv, "--out", mixed, "--block-size", "3000", "--shard", "0/7", "--quiet")
	if code != 0 || !strings.Contains(errOut, "from another run") {
		t.Fatalf("encode over another training's blocks: exit %d, stderr %q", code, errOut)
	}
	corrupt := filepath.Join(blocks, blockName(3))
	b, _ = os.ReadFile(corrupt)
	b[len(b)-10] ^= 0x40
	os.WriteFile(corrupt, b, 0o644)
	e3 := fresh("e3")
	code, _, errOut = encRun(t, bin, "merge", "--index", e3, "--blocks", blocks)
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, blockName(3)) || !strings.Contains(errOut, "corrupt") {
		t.Fatalf("merge of a corrupt block: exit %d, stderr %q", code, errOut)
	}
	t.Logf("corrupt block: %s", strings.TrimSpace(errOut))
	for l, es := range encReadLists(t, e3) {
		if len(es) != 0 {
			t.Fatalf("refused merge changed list %d", l)
		}
	}
	os.Remove(filepath.Join(blocks, blockName(5)))
	os.Remove(corrupt)
	code, _, errOut = encRun(t, bin, "merge", "--index", e3, "--blocks", blocks, "--quiet")
	if code != 0 || !strings.Contains(errOut, "blocks 3 to 3 are missing") || !strings.Contains(errOut, "blocks 5 to 5 are missing") {
		t.Fatalf("merge with gaps: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{
		{"encode", "--index", empty, "--data", fv, "--out", blocks, "--shard", "3/3"},
		{"encode", "--data", fv, "--out", blocks},
		{"merge", "--blocks", blocks},
		{"merge", "--index", empty},
		{"merge", "--index", empty, "--blocks", blocks, "--headroom", "-1"},
	} {
		code, _, errOut := encRun(t, bin, args...)
		if code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("shelf %s: exit %d, stderr %q, want a usage error", strings.Join(args, " "), code, errOut)
		}
	}
	for _, c := range []string{"encode", "merge"} {
		var stdout bytes.Buffer
		if code := Main([]string{c, "--help"}, &stdout, io.Discard); code != 0 || !strings.Contains(stdout.String(), "Example:") {
			t.Errorf("%s --help: exit %d\n%s", c, code, stdout.String())
		}
	}
}
