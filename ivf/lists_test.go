package ivf

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shelfdb/shelf/store"
)

// The Lists conformance suite: every implementation the Index may be
// given passes the same checks (as bbolt runs one suite over both of its
// freelists).
func TestListsConformance(t *testing.T) {
	impls := map[string]func(t *testing.T, nlist, cs int) Lists{
		"mem": func(t *testing.T, nlist, cs int) Lists { return NewMemLists(nlist, cs) },
		"disk": func(t *testing.T, nlist, cs int) Lists {
			st, err := store.Create(filepath.Join(t.TempDir(), "lists"), store.Options{NumLists: nlist, CodeSize: cs})
			if err != nil {
				t.Fatal(err)
			}
			return &diskLists{s: st}
		},
	}
	for name, mk := range impls {
		t.Run(name, func(t *testing.T) { testLists(t, mk) })
	}
}

// listsContent reads every list of a snapshot as "id:code" strings.
func listsContent(t *testing.T, s Snapshot) [][]string {
	t.Helper()
	out := make([][]string, s.NumLists())
	for l := range out {
		ids, codes, err := s.ReadList(l)
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.ListLen(l)
		if err != nil || n != len(ids) || len(codes) != len(ids)*s.CodeSize() {
			t.Fatalf("list %d: ListLen %d (%v), %d ids, %d code bytes", l, n, err, len(ids), len(codes))
		}
		for i, id := range ids {
			out[l] = append(out[l], fmt.Sprintf("%d:%x", id, codes[i*s.CodeSize():(i+1)*s.CodeSize()]))
		}
	}
	return out
}

func snapContent(t *testing.T, ls Lists) [][]string {
	t.Helper()
	s, err := ls.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	return listsContent(t, s)
}

func testLists(t *testing.T, mk func(t *testing.T, nlist, cs int) Lists) {
	const nlist, cs = 5, 3
	ls := mk(t, nlist, cs)
	defer func() {
		if err := ls.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	if ls.NumLists() != nlist || ls.CodeSize() != cs {
		t.Fatalf("%d lists of %d bytes, want %d of %d", ls.NumLists(), ls.CodeSize(), nlist, cs)
	}
	code := func(id int64) []byte { return []byte{byte(id), byte(id >> 8), 7} }
	entries := func(lists []int64, ids []int64) (codes []byte) {
		for _, id := range ids {
			codes = append(codes, code(id)...)
		}
		return codes
	}
	// A model of the lists, as "id:code" strings.
	want := make([][]string, nlist)
	appendWant := func(lists, ids []int64) {
		for i, l := range lists {
			want[l] = append(want[l], fmt.Sprintf("%d:%x", ids[i], code(ids[i])))
		}
	}

	// Append, with records in the same commit.
	lists, ids := []int64{0, 2, 2, 4, 0}, []int64{10, 11, 12, 13, 14}
	if err := ls.Append(lists, ids, entries(lists, ids), map[string][]byte{"k": []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	appendWant(lists, ids)
	if v, ok := ls.Meta("k"); !ok || string(v) != "v1" {
		t.Fatalf("Meta(k) = %q, %v", v, ok)
	}
	if _, ok := ls.Meta("missing"); ok {
		t.Fatal("Meta of a missing key reports it present")
	}
	if got := snapContent(t, ls); !equalLists(got, want) {
		t.Fatalf("after append: %v, want %v", got, want)
	}

	// A snapshot is a fixed view: later appends, removals and merges do
	// not change it, and its version names its content.
	old, err := ls.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	oldWant := cloneLists(want)
	again, _ := ls.Snapshot()
	if v1, v2 := old.(VersionedSource).Version(), again.(VersionedSource).Version(); v1 == 0 || v1 != v2 {
		t.Fatalf("two snapshots of the same content: versions %d and %d", v1, v2)
	}
	again.Release()

	// Bad appends change nothing: mismatched lengths, a list out of range.
	for _, bad := range []struct {
		lists, ids []int64
		codes      []byte
	}{
		{[]int64{1}, []int64{1, 2}, make([]byte, 2*cs)},
		{[]int64{1}, []int64{1}, make([]byte, cs+1)},
		{[]int64{1, nlist}, []int64{1, 2}, make([]byte, 2*cs)},
		{[]int64{-1}, []int64{1}, make([]byte, cs)},
	} {
		if err := ls.Append(bad.lists, bad.ids, bad.codes, nil); err == nil {
			t.Fatalf("append of %v %v accepted", bad.lists, bad.ids)
		}
	}
	if got := snapContent(t, ls); !equalLists(got, want) {
		t.Fatalf("after refused appends: %v, want %v", got, want)
	}

	// Remove keeps the order of what stays.
	lists, ids = []int64{2, 2, 1}, []int64{20, 21, 22}
	if err := ls.Append(lists, ids, entries(lists, ids), nil); err != nil {
		t.Fatal(err)
	}
	appendWant(lists, ids)
	n, err := ls.Remove(func(id int64) bool { return id == 12 || id == 14 || id == 99 })
	if err != nil || n != 2 {
		t.Fatalf("Remove: %d, %v; want 2", n, err)
	}
	for l := range want {
		want[l] = slices.DeleteFunc(want[l], func(e string) bool {
			return e == fmt.Sprintf("12:%x", code(12)) || e == fmt.Sprintf("14:%x", code(14))
		})
	}
	if got := snapContent(t, ls); !equalLists(got, want) {
		t.Fatalf("after remove: %v, want %v", got, want)
	}

	// MergeFrom appends each source's lists after what is there, in source
	// order, ids shifted, with its records in the same commit.
	src := NewMemLists(nlist, cs)
	sl, sids := []int64{3, 0, 3}, []int64{1, 2, 3}
	if err := src.Append(sl, sids, entries(sl, sids), nil); err != nil {
		t.Fatal(err)
	}
	ss, _ := src.Snapshot()
	merged, err := ls.MergeFrom([]Source{ss, ss}, []int64{100, 200}, 0.5, map[string][]byte{"k": []byte("v2")})
	ss.Release()
	if err != nil || merged != 6 {
		t.Fatalf("MergeFrom: %d, %v; want 6", merged, err)
	}
	for _, shift := range []int64{100, 200} {
		for l := 0; l < nlist; l++ {
			for i, sid := range sids {
				if sl[i] == int64(l) {
					want[l] = append(want[l], fmt.Sprintf("%d:%x", sid+shift, code(sid)))
				}
			}
		}
	}
	if got := snapContent(t, ls); !equalLists(got, want) {
		t.Fatalf("after merge: %v, want %v", got, want)
	}
	if v, _ := ls.Meta("k"); string(v) != "v2" {
		t.Fatalf("Meta(k) after merge = %q", v)
	}
	// A source of another shape is refused and changes nothing.
	wrong := NewMemLists(nlist+1, cs)
	ws, _ := wrong.Snapshot()
	if _, err := ls.MergeFrom([]Source{ws}, nil, 0, nil); err == nil {
		t.Fatal("merge of a source with another number of lists accepted")
	}
	ws.Release()
	if got := snapContent(t, ls); !equalLists(got, want) {
		t.Fatalf("after a refused merge: %v, want %v", got, want)
	}

	// The old snapshot still shows its content; a new one has a new version.
	if got := listsContent(t, old); !equalLists(got, oldWant) {
		t.Fatalf("old snapshot changed: %v, want %v", got, oldWant)
	}
	now, _ := ls.Snapshot()
	if now.(VersionedSource).Version() == old.(VersionedSource).Version() {
		t.Fatal("snapshots of different content share a version")
	}
	if _, _, err := now.ReadList(nlist); err == nil {
		t.Fatal("ReadList out of range accepted")
	}
	if _, err := now.ListLen(-1); err == nil {
		t.Fatal("ListLen out of range accepted")
	}
	now.Prefetch([]int{0, 1})
	now.Release()
	old.Release()

	// Refresh: nothing committed by another process.
	if changed, err := ls.Refresh(); changed || err != nil {
		t.Fatalf("Refresh = %v, %v", changed, err)
	}
}

func equalLists(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

func cloneLists(a [][]string) [][]string {
	out := make([][]string, len(a))
	for i := range a {
		out[i] = slices.Clone(a[i])
	}
	return out
}
