package ivf

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
)

// createSteps are the steps of createDir, in order (createHook).
var createSteps = []string{"directory", "store", "lists", "model written", "model renamed", "model"}

// createTestIndex is the index the creation kill test writes: ids that
// make the next id differ from ntotal, so a lost record shows.
func createTestIndex() (ix *Index, ntotal, next int64, err error) {
	data := synth.Clustered(2000, 8, 16, 3)
	if ix, err = NewFromFactory("IVF16,PQ4", 8, L2); err != nil {
		return nil, 0, 0, err
	}
	if err := ix.Train(data.Data, data.N, &TrainOptions{Seed: 1}); err != nil {
		return nil, 0, 0, err
	}
	ids := make([]int64, data.N)
	for i := range ids {
		ids[i] = int64(i) * 3
	}
	return ix, int64(data.N), ids[len(ids)-1] + 1, ix.AddWithIDs(data.Data, data.N, ids)
}

// createIndexAt creates the test index in dir the way how says: "todisk"
// (ToDisk) or "import" (CreateFrom, as faissio.Import does: a model with
// no vectors, a Source of lists, and as the next id the number of
// vectors, below the ids, so the next id stored is the one CreateFrom
// takes from the ids it read).
func createIndexAt(how, dir string) error {
	ix, ntotal, _, err := createTestIndex()
	if err != nil {
		return err
	}
	switch how {
	case "todisk":
		err = ix.ToDisk(dir)
	case "import":
		ix, err = createFromSource(ix, dir, ntotal)
	}
	if err != nil {
		return err
	}
	return ix.Close()
}

// createFromSource makes an index directory from a model rebuilt from
// src's parts and src's lists, as an import does.
func createFromSource(src *Index, dir string, nextID int64) (*Index, error) {
	model, err := NewTrained(src.Params(), src.Centroids(), src.PQ())
	if err != nil {
		return nil, err
	}
	snap, err := src.Lists().Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Release()
	return CreateFrom(model, snap, dir, nextID, nil)
}

func TestMain(m *testing.M) {
	if at := os.Getenv("SHELF_CREATE_KILL_AT"); at != "" {
		// The child of TestCreateKilled: create, and SIGKILL itself at
		// step at.
		createHook = func(step string) {
			if step == at {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
		err := createIndexAt(os.Getenv("SHELF_CREATE_HOW"), os.Getenv("SHELF_CREATE_DIR"))
		fmt.Fprintf(os.Stderr, "not killed at step %q: %v\n", at, err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// TestCreateKilled kills the creation of an index directory at every
// step, through ToDisk and through CreateFrom (the path of an import),
// and reopens: the directory is either no index (and a new creation in it
// succeeds) or a complete one with the right vectors and next id; never an
// index with a wrong next id.
func TestCreateKilled(t *testing.T) {
	_, ntotal, next, err := createTestIndex()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, how := range []string{"todisk", "import"} {
		for _, step := range createSteps {
			dir := filepath.Join(root, how+"-"+strings.ReplaceAll(step, " ", "-"))
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "SHELF_CREATE_KILL_AT="+step, "SHELF_CREATE_HOW="+how, "SHELF_CREATE_DIR="+dir)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("%s, step %q: child was not killed: %v\n%s", how, step, err, out)
			}
			ix, err := OpenReadOnly(dir)
			if err != nil {
				if !strings.Contains(err.Error(), "not an index directory") {
					t.Fatalf("%s killed at %q: open: %v", how, step, err)
				}
				// Not an index: a new creation replaces what was left.
				if err := createIndexAt(how, dir); err != nil {
					t.Fatalf("%s killed at %q, created again: %v", how, step, err)
				}
				ix, err = OpenReadOnly(dir)
				if err != nil {
					t.Fatalf("%s killed at %q, created again: %v", how, step, err)
				}
			}
			if n, nx := ix.NTotal(), ix.NextID(); n != ntotal || nx != next {
				t.Fatalf("%s killed at %q: ntotal %d, next id %d; want %d, %d", how, step, n, nx, ntotal, next)
			}
			ix.Close()
		}
	}
}

func TestCreateRefuses(t *testing.T) {
	ix, _, _, err := createTestIndex()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	if err := ix.ToDisk(dir); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("ToDisk into a directory of other files: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "notes.txt")); err != nil || string(b) != "mine" {
		t.Fatal("the refused creation touched the directory")
	}
	idx := filepath.Join(t.TempDir(), "idx")
	if err := ix.ToDisk(idx); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	again, _, _, _ := createTestIndex()
	if err := again.ToDisk(idx); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "already holds an index") {
		t.Fatalf("ToDisk into an index: %v", err)
	}
}

// TestCreateFrom makes indexes from a model and a Source, in memory and
// on disk: the same lists, the next id after the ids read, progress up to
// the total; and refuses the id -1, mismatched sources and broken parts.
func TestCreateFrom(t *testing.T) {
	src, ntotal, next, err := createTestIndex()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "idx")} {
		model, err := NewTrained(src.Params(), src.Centroids(), src.PQ())
		if err != nil {
			t.Fatal(err)
		}
		snap, _ := src.Lists().Snapshot()
		var last int64
		ix, err := CreateFrom(model, snap, dir, 10, func(done, total int64) {
			if done < last || done > total || total != ntotal {
				t.Errorf("progress %d of %d", done, total)
			}
			last = done
		})
		snap.Release()
		if err != nil {
			t.Fatal(err)
		}
		if last != ntotal || ix.NTotal() != ntotal || ix.NextID() != next || ix.Dir() != dir || model.NTotal() != 0 {
			t.Fatalf("dir %q: progress to %d, %d vectors, next id %d; want %d, %d", dir, last, ix.NTotal(), ix.NextID(), ntotal, next)
		}
		if err := src.SameTraining(ix); err != nil {
			t.Fatal(err)
		}
		ad, ai, _ := src.Search(src.Centroids()[:8], 1, 5, 4)
		bd, bi, err := ix.Search(src.Centroids()[:8], 1, 5, 4)
		if err != nil || !slices.Equal(ad, bd) || !slices.Equal(ai, bi) {
			t.Fatalf("dir %q: searches differ: %v %v, %v %v (%v)", dir, ad, ai, bd, bi, err)
		}
		if dir != "" {
			ix.Close()
			if ix, err = OpenReadOnly(dir); err != nil {
				t.Fatal(err)
			}
			if ix.NextID() != next {
				t.Fatalf("reopened: next id %d, want %d", ix.NextID(), next)
			}
		}
		// A next id above the ids is kept.
		snap, _ = ix.Lists().Snapshot()
		again, err := CreateFrom(ix, snap, "", next+100, nil)
		snap.Release()
		if err != nil || again.NextID() != next+100 {
			t.Fatalf("next id %d given: %d (%v)", next+100, again.NextID(), err)
		}
		ix.Close()
	}

	// The id -1 is an empty result slot, never a vector's.
	p := src.Params()
	bad := NewMemLists(p.NList, p.CodeSize())
	if err := bad.Append([]int64{0, 3}, []int64{7, -1}, make([]byte, 2*p.CodeSize()), nil); err != nil {
		t.Fatal(err)
	}
	snap, _ := bad.Snapshot()
	target := filepath.Join(t.TempDir(), "bad")
	for _, dir := range []string{"", target} {
		if _, err := CreateFrom(src, snap, dir, 0, nil); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "list 3") {
			t.Fatalf("dir %q: id -1 accepted: %v", dir, err)
		}
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused creation left %s: %v", target, err)
	}
	other := NewMemLists(p.NList+1, p.CodeSize())
	osnap, _ := other.Snapshot()
	if _, err := CreateFrom(src, osnap, "", 0, nil); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("a source of other lists: %v", err)
	}
	if _, err := CreateFrom(src, snap, "", -5, nil); !errors.Is(err, ErrInput) {
		t.Fatalf("next id -5: %v", err)
	}
	untrained, _ := New(p)
	if _, err := CreateFrom(untrained, snap, "", 0, nil); !errors.Is(err, ErrNotTrained) {
		t.Fatalf("untrained model: %v", err)
	}

	// NewTrained checks the parts.
	cents := slices.Clone(src.Centroids())
	if _, err := NewTrained(p, cents[:len(cents)-1], src.PQ()); !errors.Is(err, ErrParams) {
		t.Fatalf("short centroids: %v", err)
	}
	cents[17] = float32(math.Inf(1))
	if _, err := NewTrained(p, cents, src.PQ()); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "centroid 2") {
		t.Fatalf("infinite centroid: %v", err)
	}
	if _, err := NewTrained(p, src.Centroids(), nil); !errors.Is(err, ErrParams) {
		t.Fatalf("PQ missing: %v", err)
	}
	q := *src.PQ()
	q.Centroids = slices.Clone(q.Centroids)
	q.Centroids[5] = float32(math.NaN())
	if _, err := NewTrained(p, src.Centroids(), &q); !errors.Is(err, ErrInput) {
		t.Fatalf("NaN in the PQ: %v", err)
	}
	q.Centroids = q.Centroids[:10]
	if _, err := NewTrained(p, src.Centroids(), &q); !errors.Is(err, ErrParams) {
		t.Fatalf("short PQ: %v", err)
	}
	flat := p
	flat.Flat = true
	if _, err := NewTrained(flat, src.Centroids(), src.PQ()); !errors.Is(err, ErrParams) {
		t.Fatalf("IVF-Flat with a PQ: %v", err)
	}
}

// TestUnregisteredRead opens an index read-only where it cannot register
// as a reader (its store's readers/ is a file here; no write access or a
// full disk do the same): it searches, and Unregistered says why.
func TestUnregisteredRead(t *testing.T) {
	ix, _, _, err := createTestIndex()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "idx")
	if err := ix.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	readers := filepath.Join(dir, listsName, "readers")
	os.RemoveAll(readers)
	if err := os.WriteFile(readers, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if ro.Unregistered() == nil {
		t.Fatal("read-only open without a readers directory reports itself registered")
	}
	q := synth.Clustered(5, 8, 16, 3).Data
	if _, ids, err := ro.Search(q, 5, 3, 16); err != nil || ids[0] < 0 {
		t.Fatalf("unregistered search: %v, %v", ids, err)
	}
}
