package store

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"
)

// ent is one entry of the reference model.
type ent struct {
	id   int64
	code []byte
}

// model is the in-memory reference the store is compared with.
type model struct {
	cs    int
	lists [][]ent
	meta  map[string]string
}

func newModel(nlist, cs int) *model {
	return &model{cs: cs, lists: make([][]ent, nlist), meta: map[string]string{}}
}

func (m *model) clone() *model {
	c := &model{cs: m.cs, lists: make([][]ent, len(m.lists)), meta: map[string]string{}}
	for l, es := range m.lists {
		c.lists[l] = append([]ent(nil), es...)
	}
	for k, v := range m.meta {
		c.meta[k] = v
	}
	return c
}

// memSource is an in-memory Source for merges.
type memSource struct {
	cs    int
	lists [][]ent
}

func (m *memSource) NumLists() int              { return len(m.lists) }
func (m *memSource) CodeSize() int              { return m.cs }
func (m *memSource) ListLen(l int) (int, error) { return len(m.lists[l]), nil }
func (m *memSource) ReadList(l int) ([]int64, []byte, error) {
	ids := make([]int64, len(m.lists[l]))
	codes := make([]byte, 0, len(m.lists[l])*m.cs)
	for i, e := range m.lists[l] {
		ids[i] = e.id
		codes = append(codes, e.code...)
	}
	return ids, codes, nil
}

func randEntries(r *rand.Rand, n, cs int) ([]int64, []byte) {
	ids := make([]int64, n)
	codes := make([]byte, n*cs)
	for i := range ids {
		ids[i] = r.Int63n(1 << 40)
	}
	r.Read(codes)
	return ids, codes
}

func toEnts(ids []int64, codes []byte, cs int) []ent {
	out := make([]ent, len(ids))
	for i := range ids {
		out[i] = ent{ids[i], append([]byte(nil), codes[i*cs:(i+1)*cs]...)}
	}
	return out
}

// compareView checks that v holds exactly the model's lists.
func compareView(v *View, m *model) error {
	if v.NumLists() != len(m.lists) {
		return fmt.Errorf("store has %d lists, model %d", v.NumLists(), len(m.lists))
	}
	for l, es := range m.lists {
		ids, codes, err := v.ReadList(l)
		if err != nil {
			return err
		}
		if len(ids) != len(es) || len(codes) != len(es)*m.cs {
			return fmt.Errorf("list %d: store has %d entries (%d code bytes), model %d", l, len(ids), len(codes), len(es))
		}
		for i, e := range es {
			if ids[i] != e.id || !bytes.Equal(codes[i*m.cs:(i+1)*m.cs], e.code) {
				return fmt.Errorf("list %d entry %d: store (%d, %x), model (%d, %x)", l, i, ids[i], codes[i*m.cs:(i+1)*m.cs], e.id, e.code)
			}
		}
	}
	return nil
}

func compareStore(s *Store, m *model) error {
	v, err := s.View()
	if err != nil {
		return err
	}
	defer v.Release()
	if err := compareView(v, m); err != nil {
		return err
	}
	for k, want := range m.meta {
		got, ok := s.Meta(k)
		if !ok || string(got) != want {
			return fmt.Errorf("meta %q: store %q (%v), model %q", k, got, ok, want)
		}
	}
	if n := len(s.MetaKeys()); n != len(m.meta) {
		return fmt.Errorf("store has %d meta keys, model %d", n, len(m.meta))
	}
	return nil
}

func mustCreate(t testing.TB, dir string, nlist, cs int) *Store {
	t.Helper()
	s, err := Create(dir, Options{NumLists: nlist, CodeSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
