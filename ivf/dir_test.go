package ivf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
// (ToDisk) or "import" (ImportFAISS of the index's FAISS export).
func createIndexAt(how, dir, faissFile string) error {
	ix, _, _, err := createTestIndex()
	if err != nil {
		return err
	}
	switch how {
	case "todisk":
		err = ix.ToDisk(dir)
	case "import":
		if _, serr := os.Stat(faissFile); serr != nil {
			if err := ix.WriteFAISS(faissFile, nil); err != nil {
				return err
			}
		}
		ix, err = ImportFAISS(faissFile, dir, nil)
	}
	if err != nil {
		return err
	}
	return ix.Close()
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
		err := createIndexAt(os.Getenv("SHELF_CREATE_HOW"), os.Getenv("SHELF_CREATE_DIR"), os.Getenv("SHELF_CREATE_FAISS"))
		fmt.Fprintf(os.Stderr, "not killed at step %q: %v\n", at, err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// TestCreateKilled kills the creation of an index directory at every
// step, through ToDisk and ImportFAISS, and reopens: the directory is
// either no index (and a new creation in it succeeds) or a complete one
// with the right vectors and next id; never an index with a wrong next id.
func TestCreateKilled(t *testing.T) {
	_, ntotal, next, err := createTestIndex()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	faissFile := filepath.Join(root, "src.index")
	for _, how := range []string{"todisk", "import"} {
		for _, step := range createSteps {
			dir := filepath.Join(root, how+"-"+strings.ReplaceAll(step, " ", "-"))
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "SHELF_CREATE_KILL_AT="+step, "SHELF_CREATE_HOW="+how,
				"SHELF_CREATE_DIR="+dir, "SHELF_CREATE_FAISS="+faissFile)
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
				if err := createIndexAt(how, dir, faissFile); err != nil {
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
