package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/shelfdb/shelf/faissio"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
	"github.com/shelfdb/shelf/store"
)

// The verify child: this program re-executed as
// "crashcampaign verify-index DIR OUT" opens DIR for writing through the
// ivf package (as the next add or merge would), and writes every list to
// OUT. It runs in its own process so that a panic or a hang in opening
// an index is counted, not fatal to the campaign.
const verifyArg = "verify-index"

// restoredTag starts the line the verify child prints when the open
// restored acknowledged commits from the published table.
const restoredTag = "restored:"

func verifyMain(dir, out string) int {
	if err := dumpIndex(dir, out); err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		return 1
	}
	return 0
}

// dumpIndex writes nlist, code size, ntotal, then per list its length,
// ids and codes, little endian.
func dumpIndex(dir, out string) (err error) {
	// The store is opened alone first, for what its open restored from
	// the published table (Store.Recovered), which ivf.Open does not say.
	st, err := store.Open(filepath.Join(dir, "lists"), nil)
	if err != nil {
		return err
	}
	note := st.Recovered()
	if err := st.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if note != "" {
		fmt.Printf("%s %s\n", restoredTag, note)
	}
	ix, err := ivf.Open(dir, nil)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := ix.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	snap, err := ix.Lists().Snapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	put := func(v uint64) { _ = binary.Write(w, binary.LittleEndian, v) }
	put(uint64(snap.NumLists()))
	put(uint64(snap.CodeSize()))
	put(uint64(ix.NTotal()))
	for l := 0; l < snap.NumLists(); l++ {
		ids, codes, err := snap.ReadList(l)
		if err != nil {
			return fmt.Errorf("list %d: %w", l, err)
		}
		put(uint64(len(ids)))
		for _, id := range ids {
			put(uint64(id))
		}
		if _, err := w.Write(codes); err != nil {
			return err
		}
	}
	return w.Flush()
}

// content is what a dump holds: where each id is, as often as it is.
type content struct {
	ntotal int64
	cs     int
	at     map[int64][]place
}

type place struct {
	list int
	code string
}

func readDump(path string) (*content, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var hdr [3]uint64
	if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
		return nil, err
	}
	c := &content{ntotal: int64(hdr[2]), cs: int(hdr[1]), at: map[int64][]place{}}
	for l := 0; l < int(hdr[0]); l++ {
		var n uint64
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			return nil, err
		}
		if n > 1<<30 {
			return nil, fmt.Errorf("list %d: %d entries", l, n)
		}
		ids := make([]int64, n)
		if err := binary.Read(r, binary.LittleEndian, ids); err != nil {
			return nil, err
		}
		codes := make([]byte, int(n)*c.cs)
		if _, err := io.ReadFull(r, codes); err != nil {
			return nil, err
		}
		for i, id := range ids {
			c.at[id] = append(c.at[id], place{l, string(codes[i*c.cs : (i+1)*c.cs])})
		}
	}
	return c, nil
}

// idSet is a set of vector ids (rows of the pool).
type idSet map[int64]struct{}

func (s idSet) clone() idSet {
	c := make(idSet, len(s))
	for id := range s {
		c[id] = struct{}{}
	}
	return c
}

func (s idSet) addRange(lo, n int) {
	for id := lo; id < lo+n; id++ {
		s[int64(id)] = struct{}{}
	}
}

func (s idSet) sorted() []int64 {
	out := make([]int64, 0, len(s))
	for id := range s {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// verdict is what the checks of one trial found.
type verdict struct {
	refused  bool // the index did not open (clearly), or shelf verify reported damage
	restored bool // the writer's open restored lost commits from the published table
	lost     int  // acknowledged entries missing, doubled or wrong
	wrong    int  // commands that exited 0 with a wrong answer
	panics   int
	hangs    int
	unclear  int // refusals that are not one clear line
	half     int // interrupted creations that left an index that opens, not whole
	failed   int // commands that failed with no fault to excuse them
	notes    []string
}

func (v *verdict) note(format string, a ...any) {
	if len(v.notes) < 8 {
		v.notes = append(v.notes, fmt.Sprintf(format, a...))
	}
}

// sound reports a trial where nothing went wrong (a refusal is judged
// by the caller).
func (v *verdict) sound() bool {
	return v.lost == 0 && v.wrong == 0 && v.panics == 0 && v.hangs == 0 && v.unclear == 0 && v.failed == 0 && v.half == 0
}

// command records how r ended: a trace, a hang or an unclear refusal
// counts against the trial. It returns whether r exited 0.
func (v *verdict) command(r cmdResult) bool {
	switch {
	case r.hung:
		v.hangs++
		v.note("hang: %v", r)
	case r.trace():
		v.panics++
		v.note("trace: %v", r)
	case r.exit != 0 && !r.killed && !r.clear():
		v.unclear++
		v.note("unclear: %v", r)
	}
	return r.ok()
}

// check examines the index in dir, which must hold exactly want and may
// hold any of maybe (the vectors of a command that did not finish). It
// returns the vectors it holds as they should be, and those it holds
// wrong (which a later check is told to ignore, so a fault counts once),
// and whether it opened. With mayRefuse (a flipped byte), a clear
// refusal is the fault detected.
func (c *campaign) check(v *verdict, dir string, want, maybe idSet, mayRefuse bool, ignore ...idSet) (present, bad idSet, ok bool) {
	ignored := func(id int64) bool {
		for _, s := range ignore {
			if _, ok := s[id]; ok {
				return true
			}
		}
		return false
	}
	// 1. What a user sees first: a read-only stats.
	st := c.shelfRun(0, "stats", "--index", dir, "--json")
	if v.command(st) {
		n, err := ntotalOf(st.stdout)
		if err != nil {
			v.wrong++
			v.note("stats output: %v", err)
		} else if n < int64(len(want)) || n > int64(len(want)+len(maybe)+len(joinSets(ignore))) {
			v.wrong++
			v.note("read-only stats: ntotal %d, acknowledged %d (+%d unfinished)", n, len(want), len(maybe))
		}
	}
	// 2. Open for writing and read every list.
	dump := filepath.Join(c.work, "dump.bin")
	os.Remove(dump)
	vr := run(c.cfg.timeout, 0, c.self, verifyArg, dir, dump)
	if !v.command(vr) {
		if !vr.hung && !vr.trace() {
			v.refused = true
			if !mayRefuse {
				v.note("refused: %v", vr)
			}
		}
		return nil, nil, false
	}
	if i := strings.Index(vr.stdout, restoredTag); i >= 0 {
		v.restored = true
		v.note("open restored: %s", strings.TrimSpace(vr.stdout[i+len(restoredTag):]))
	}
	ct, err := readDump(dump)
	if err != nil {
		v.failed++
		v.note("dump: %v", err)
		return nil, nil, false
	}
	present, bad = idSet{}, idSet{}
	for id, ps := range ct.at {
		if ignored(id) {
			continue
		}
		_, w := want[id]
		_, m := maybe[id]
		good := len(ps) == 1 && c.rightPlace(id, ps[0])
		if good && (w || m) {
			present[id] = struct{}{}
		} else {
			bad[id] = struct{}{}
		}
		switch {
		case w && !good:
			v.lost++
			v.note("acknowledged entry %d: %d copies, first in list %d", id, len(ps), ps[0].list)
		case w || m && good:
		case m:
			v.wrong++
			v.note("unfinished entry %d: %d copies, first in list %d", id, len(ps), ps[0].list)
		case !w:
			v.wrong++
			v.note("entry %d is there but was never added", id)
		}
	}
	missing := 0
	for id := range want {
		if _, ok := ct.at[id]; !ok && !ignored(id) {
			missing++
		}
	}
	v.lost += missing
	if missing > 0 {
		v.note("%d acknowledged entries missing", missing)
	}
	// What should be there: the acknowledged vectors and those of the
	// unfinished command that made it in; plus, after an earlier check
	// found some wrong, those (counted then).
	acked := want.clone()
	for id := range present {
		acked[id] = struct{}{}
	}
	extra := 0
	for id, ps := range ct.at {
		if ignored(id) {
			extra += len(ps)
		}
	}
	// 3. Stats again, now that a writer has opened it.
	st = c.shelfRun(0, "stats", "--index", dir, "--json")
	if v.command(st) {
		if n, err := ntotalOf(st.stdout); err != nil || n != int64(len(acked)+extra) {
			v.wrong++
			v.note("stats after open: ntotal %d (%v), acknowledged %d", n, err, len(acked)+extra)
		}
	} else {
		v.failed++
		v.note("stats after a successful open: %v", st)
	}
	// 4. Search, against the reference holding what should be there.
	if extra == 0 {
		c.searchCheck(v, dir, acked)
	}
	return present, bad, true
}

// joinSets is the union of sets.
func joinSets(sets []idSet) idSet {
	all := idSet{}
	for _, s := range sets {
		for id := range s {
			all[id] = struct{}{}
		}
	}
	return all
}

// rightPlace reports whether p is the list and code the reference gives id.
func (c *campaign) rightPlace(id int64, p place) bool {
	if id < 0 || id >= int64(len(c.refList)) {
		return false
	}
	return p.list == int(c.refList[id]) && p.code == string(c.refCode[int(id)*c.cs:int(id+1)*c.cs])
}

func ntotalOf(out string) (int64, error) {
	var s struct {
		NTotal *int64 `json:"ntotal"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return 0, err
	}
	if s.NTotal == nil {
		return 0, errors.New("no ntotal")
	}
	return *s.NTotal, nil
}

// searchCheck runs shelf search on dir with every list probed and
// compares its result ids with the reference index holding present.
func (c *campaign) searchCheck(v *verdict, dir string, present idSet) {
	out := filepath.Join(c.work, "search.ivecs")
	os.Remove(out)
	sr := c.shelfRun(0, "search", "--index", dir, "--queries", c.queriesPath,
		"--k", fmt.Sprint(searchK), "--nprobe", fmt.Sprint(c.nlist), "--threads", "1", "--out", out)
	if !v.command(sr) {
		v.failed++
		v.note("search of an index that opened: %v", sr)
		return
	}
	n, k, got, err := vecio.ReadInt32(out)
	if err != nil || n != c.queries.N || k != searchK {
		v.wrong++
		v.note("search output %s: %d x %d (%v)", out, n, k, err)
		return
	}
	want, err := c.refSearch(present)
	if err != nil {
		v.failed++
		v.note("reference search: %v", err)
		return
	}
	for i := range want {
		a, b := int64(got[i]), want[i]
		if a == b {
			continue
		}
		// Entries with the same list and code are at the same distance,
		// in either order.
		if a >= 0 && b >= 0 && a < int64(len(c.refList)) && c.refList[a] == c.refList[b] &&
			string(c.refCode[int(a)*c.cs:int(a+1)*c.cs]) == string(c.refCode[int(b)*c.cs:int(b+1)*c.cs]) {
			continue
		}
		v.wrong++
		v.note("search: query %d rank %d: id %d, reference %d", i/searchK, i%searchK, a, b)
		return
	}
}

const searchK = 10

// refSearch searches the reference: an in-memory index of the template
// model (read from its FAISS export) holding the vectors of present,
// added as their reference codes.
func (c *campaign) refSearch(present idSet) ([]int64, error) {
	ix, err := faissio.Read(c.templateFAISS)
	if err != nil {
		return nil, err
	}
	ids := present.sorted()
	codes := make([]byte, 0, len(ids)*(c.cs+c.lnb))
	for _, id := range ids {
		codes = append(codes, c.twoLayer(id)...)
	}
	if len(ids) > 0 {
		if err := ix.AddSACodes(codes, ids); err != nil {
			return nil, err
		}
	}
	_, labels, err := ix.Search(c.queries.Data, c.queries.N, searchK, c.nlist)
	return labels, err
}

// twoLayer is the reference flat code of id: list number, then PQ code.
func (c *campaign) twoLayer(id int64) []byte {
	out := make([]byte, c.lnb, c.lnb+c.cs)
	for b := 0; b < c.lnb; b++ {
		out[b] = byte(c.refList[id] >> (8 * b))
	}
	return append(out, c.refCode[int(id)*c.cs:int(id+1)*c.cs]...)
}
