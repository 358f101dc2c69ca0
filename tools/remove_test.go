package tools

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/vecio"
)

// TestRemoveBinary removes ids given as .npy and as an .ivecs column
// through the binary and checks, list by list, that exactly those
// vectors are gone.
func TestRemoveBinary(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	idx, qF, _, queries, _ := searchFixture(t, dir) // ids 0 to 7999
	held := func() map[int64]bool {
		m := map[int64]bool{}
		for _, l := range encReadLists(t, idx) {
			for _, e := range l {
				m[e.id] = true
			}
		}
		return m
	}
	if n := len(held()); n != 8000 {
		t.Fatalf("fixture holds %d ids", n)
	}

	// .npy: 17 twice, one id the index does not hold.
	npy := filepath.Join(dir, "ids.npy")
	if err := vecio.WriteNpyInt64(npy, []int64{5, 17, 17, 9_999_999, 123}); err != nil {
		t.Fatal(err)
	}
	out := shelfOK(t, bin, "remove", "--index", idx, "--ids", npy)
	if !strings.Contains(out, "removed 3 vectors") || !strings.Contains(out, "4 distinct ids") || !strings.Contains(out, "7997 of 8000 left") {
		t.Fatalf("remove summary: %q", out)
	}
	// An .ivecs column.
	iv := filepath.Join(dir, "ids.ivecs")
	if err := vecio.WriteIvecs(iv, 2, 1, []int32{200, 7999}); err != nil {
		t.Fatal(err)
	}
	if out := shelfOK(t, bin, "remove", "--index", idx, "--ids", iv); !strings.Contains(out, "removed 2 vectors") {
		t.Fatalf("remove of an .ivecs column: %q", out)
	}
	got := held()
	for _, id := range []int64{5, 17, 123, 200, 7999} {
		if got[id] {
			t.Errorf("id %d still held after its removal", id)
		}
	}
	if len(got) != 7995 {
		t.Errorf("%d ids held after removing 5 of 8000", len(got))
	}
	// Again: nothing left to remove.
	if out := shelfOK(t, bin, "remove", "--index", idx, "--ids", npy); !strings.Contains(out, "removed 0 vectors") {
		t.Fatalf("second remove: %q", out)
	}

	// Errors: two columns, missing flags; --help has an example.
	two := filepath.Join(dir, "two.ivecs")
	if err := vecio.WriteIvecs(two, 2, 2, []int32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := shelfRun(t, bin, "remove", "--index", idx, "--ids", two); code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "2 columns") {
		t.Errorf("remove with a 2-column file: exit %d, %q", code, errOut)
	}
	for _, args := range [][]string{{"remove", "--index", idx}, {"remove", "--ids", npy}} {
		if _, errOut, code := shelfRun(t, bin, args...); code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("shelf %v: exit %d, %q; want a usage error", args, code, errOut)
		}
	}
	if out, _, code := shelfRun(t, bin, "remove", "--help"); code != 0 || !strings.Contains(out, "Example:") {
		t.Errorf("remove --help: exit %d\n%s", code, out)
	}
	if len(held()) != 7995 {
		t.Error("a refused remove changed the index")
	}
	// Removed ids are not handed out again: adds after removing the
	// largest id 7999 start at 8000.
	shelfOK(t, bin, "add", "--index", idx, "--data", qF, "--quiet")
	got = held()
	if got[7999] || !got[8000] || !got[8000+int64(queries.N)-1] || len(got) != 7995+queries.N {
		t.Errorf("after removing id 7999 and adding %d vectors: 7999 held %v, 8000 held %v, %d ids", queries.N, got[7999], got[8000], len(got))
	}
}
