package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// churn commits n random batches to s and applies them to m: adds,
// copy-on-write updates (which move lists and free their slots), clears
// and user records set and deleted.
func churn(t testing.TB, r *rand.Rand, s *Store, m *model, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		b, err := s.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for k := 1 + r.Intn(3); k > 0; k-- {
			l := r.Intn(len(m.lists))
			switch op := r.Intn(10); {
			case op < 5 || len(m.lists[l]) == 0:
				ids, codes := randEntries(r, 1+r.Intn(40), m.cs)
				if _, err := b.Add(l, ids, codes); err != nil {
					t.Fatal(err)
				}
				m.lists[l] = append(m.lists[l], toEnts(ids, codes, m.cs)...)
			case op < 9:
				pos := r.Intn(len(m.lists[l]))
				ids, codes := randEntries(r, 1, m.cs)
				if err := b.Update(l, pos, ids, codes); err != nil {
					t.Fatal(err)
				}
				m.lists[l][pos] = toEnts(ids, codes, m.cs)[0]
			default:
				if err := b.Clear(l); err != nil {
					t.Fatal(err)
				}
				m.lists[l] = nil
			}
		}
		switch key := fmt.Sprintf("k%d", r.Intn(4)); r.Intn(4) {
		case 0:
			v := fmt.Sprintf("v%d", r.Intn(1000))
			_ = b.SetMeta(key, []byte(v))
			m.meta[key] = v
		case 1:
			_ = b.DeleteMeta(key)
			delete(m.meta, key)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReaderSeesEveryCommit checks that a read-only store, opened or
// refreshed at any time, sees the writer's last commit: with no reader
// registered while the writer commits, across the folding of the log
// into a new table.snap, across compactions and across a reopen of the
// writer; and that reading the log incrementally (Refresh) and whole (a
// new open) give the same table.
func TestReaderSeesEveryCommit(t *testing.T) {
	dir := t.TempDir()
	const nlist, cs = 16, 4
	w, err := Create(dir, Options{NumLists: nlist, CodeSize: cs, logLimit: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	m := newModel(nlist, cs)
	churn(t, r, w, m, 5)
	// No reader was registered during these commits.
	ro, err := OpenReadOnly(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ro.Close() }()
	if ro.Seq() != w.Seq() {
		t.Fatalf("read-only open sees commit %d, the writer committed %d", ro.Seq(), w.Seq())
	}
	if err := compareStore(ro, m); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 60; round++ {
		churn(t, r, w, m, 1+r.Intn(4))
		if round%20 == 19 {
			if _, err := w.Compact(); err != nil {
				t.Fatal(err)
			}
		}
		if round == 40 {
			// A writer that reopens publishes again; readers follow.
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if w, err = Open(dir, &Options{logLimit: 4 << 10}); err != nil {
				t.Fatal(err)
			}
		}
		changed, err := ro.Refresh()
		if err != nil {
			t.Fatalf("round %d: refresh: %v", round, err)
		}
		if !changed || ro.Seq() != w.Seq() {
			t.Fatalf("round %d: refresh changed=%v, at commit %d, the writer committed %d", round, changed, ro.Seq(), w.Seq())
		}
		if err := compareStore(ro, m); err != nil {
			t.Fatalf("round %d, refreshed: %v", round, err)
		}
		if err := ro.Check(); err != nil {
			t.Fatal(err)
		}
		fresh, err := OpenReadOnly(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fresh.Seq() != w.Seq() {
			t.Fatalf("round %d: a new read-only open sees commit %d, the writer committed %d", round, fresh.Seq(), w.Seq())
		}
		if err := compareStore(fresh, m); err != nil {
			t.Fatalf("round %d, opened: %v", round, err)
		}
		fresh.Close()
	}
	if changed, err := ro.Refresh(); err != nil || changed {
		t.Fatalf("refresh without a commit: changed=%v, %v", changed, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReaderLogTornTail cuts table.log at every length and damages
// records: a reader sees the last commit whose record is whole and
// intact, never an error, never a later commit past a damaged one.
func TestReaderLogTornTail(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, Options{NumLists: 4, CodeSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	first := w.Seq()
	for i := 0; i < 3; i++ {
		if _, err := w.AddEntries(i, []int64{int64(i)}, []byte{1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(dir, logName)
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	w.abandon() // as a kill: no folding into table.snap
	var ends []int
	for p := logHeaderLen; p < len(raw); {
		_, n, ok := decodeLogRecord(raw[p:])
		if !ok {
			t.Fatalf("record at %d does not decode", p)
		}
		p += n
		ends = append(ends, p)
	}
	if len(ends) != 3 {
		t.Fatalf("%d records, want 3", len(ends))
	}
	seqAt := func(b []byte) uint64 {
		t.Helper()
		if err := os.WriteFile(logPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ro, err := OpenReadOnly(dir, nil)
		if err != nil {
			t.Fatalf("log of %d bytes: %v", len(b), err)
		}
		defer ro.Close()
		return ro.Seq()
	}
	for n := logHeaderLen; n <= len(raw); n++ {
		want := first
		for _, e := range ends {
			if n >= e {
				want++
			}
		}
		if got := seqAt(raw[:n]); got != want {
			t.Fatalf("log cut at %d bytes: reader at commit %d, want %d", n, got, want)
		}
	}
	// A damaged byte in the second record hides it and the third.
	bad := append([]byte(nil), raw...)
	bad[ends[0]+20] ^= 0x40
	if got := seqAt(bad); got != first+1 {
		t.Fatalf("damaged second record: reader at commit %d, want %d", got, first+1)
	}
	// A log of another snapshot is ignored, a damaged header too.
	bad = append([]byte(nil), raw...)
	bad[3] ^= 1
	if got := seqAt(bad); got != first {
		t.Fatalf("damaged header: reader at commit %d, want %d", got, first)
	}
}

// TestReaderAfterKill kills a writing process and opens the store
// read-only without any writer opening it again: every commit the writer
// had returned from is visible (the log is in the page cache, which the
// kill leaves).
func TestReaderAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; run without -short")
	}
	dir := t.TempDir()
	s := mustCreate(t, dir, killLists, killCodeSize)
	s.Close()
	next := 0
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SHELF_KILL_CHILD_DIR="+dir, "SHELF_KILL_CHILD_START="+strconv.Itoa(next))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		last := next - 1
		for sc.Scan() {
			var k int
			if _, err := fmt.Sscanf(sc.Text(), "committed %d", &k); err == nil {
				last = k
			}
			if last >= next+15+round*7 {
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() {
			var k int
			if _, err := fmt.Sscanf(sc.Text(), "committed %d", &k); err == nil {
				last = k
			}
		}
		_ = cmd.Wait()
		if last < next {
			t.Fatalf("round %d: the writer committed nothing: %s", round, stderr.String())
		}
		ro, err := OpenReadOnly(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		top := -1
		v, _ := ro.View()
		for l := 0; l < killLists; l++ {
			ids, codes, _ := v.ReadList(l)
			for i, id := range ids {
				if !bytes.Equal(codes[i*killCodeSize:(i+1)*killCodeSize], killCode(id)) {
					t.Fatalf("round %d: list %d entry %d: wrong code", round, l, i)
				}
				if k := int(id >> 20); k > top {
					top = k
				}
			}
		}
		v.Release()
		ro.Close()
		if top < last {
			t.Fatalf("round %d: the writer returned from batch %d, a reader after the kill sees batches up to %d", round, last, top)
		}
		next = top + 1
	}
}

// TestWALDamage damages Pebble's log the ways a disk or an operator can
// (a flipped byte, a truncation, a deletion), which Pebble takes for a
// torn write and silently reopens behind. The writer must notice that
// the published table holds newer commits and restore them, also after a
// compaction (whose old data file is gone), or refuse to open.
func TestWALDamage(t *testing.T) {
	damages := map[string]func(path string, raw []byte) error{
		"flip": func(path string, raw []byte) error {
			raw[len(raw)/2] ^= 0x10
			return os.WriteFile(path, raw, 0o644)
		},
		"truncate": func(path string, raw []byte) error { return os.Truncate(path, int64(len(raw)/3)) },
		"delete":   func(path string, raw []byte) error { return os.Remove(path) },
	}
	for _, name := range []string{"flip", "truncate", "delete"} {
		for _, compact := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/compact=%v", name, compact), func(t *testing.T) {
				dir := t.TempDir()
				const nlist, cs = 8, 4
				s := mustCreate(t, dir, nlist, cs)
				r := rand.New(rand.NewSource(2))
				m := newModel(nlist, cs)
				churn(t, r, s, m, 30)
				if compact {
					if _, err := s.Compact(); err != nil {
						t.Fatal(err)
					}
					churn(t, r, s, m, 5)
				}
				seq := s.Seq()
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				logs, _ := filepath.Glob(filepath.Join(dir, metaDirName, "*.log"))
				if len(logs) == 0 {
					t.Fatal("no Pebble log")
				}
				wal := logs[len(logs)-1]
				raw, err := os.ReadFile(wal)
				if err != nil {
					t.Fatal(err)
				}
				if err := damages[name](wal, raw); err != nil {
					t.Fatal(err)
				}
				s, err = Open(dir, nil)
				if err != nil {
					t.Fatalf("open after WAL damage: %v", err)
				}
				if s.Seq() != seq {
					t.Fatalf("reopened at commit %d, %d was acknowledged", s.Seq(), seq)
				}
				if s.Recovered() == "" {
					t.Fatal("restored from the published table without saying so")
				}
				t.Log(s.Recovered())
				if err := s.Check(); err != nil {
					t.Fatal(err)
				}
				if err := compareStore(s, m); err != nil {
					t.Fatal(err)
				}
				// It goes on writing, and the restoration is durable.
				churn(t, r, s, m, 10)
				if _, err := s.Compact(); err != nil {
					t.Fatal(err)
				}
				seq = s.Seq()
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s, err = Open(dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if s.Seq() != seq || s.Recovered() != "" {
					t.Fatalf("second reopen at commit %d (want %d), recovered %q", s.Seq(), seq, s.Recovered())
				}
				if err := compareStore(s, m); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestWALDamageRefused checks the open that cannot restore the lost
// commits (the published table's data file is damaged too) refuses to
// write, saying what was lost and how to accept it, and opens once the
// operator accepts the loss.
func TestWALDamageRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustCreate(t, dir, 4, 4)
	for i := 0; i < 10; i++ {
		if _, err := s.AddEntries(i%4, make([]int64, 100), make([]byte, 400)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	logs, _ := filepath.Glob(filepath.Join(dir, metaDirName, "*.log"))
	wal := logs[len(logs)-1]
	raw, _ := os.ReadFile(wal)
	if err := os.Truncate(wal, int64(len(raw)/2)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, dataName(2)), headerSize+8); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "lost commits") || !strings.Contains(err.Error(), "remove") {
		t.Fatalf("open with lost commits that cannot be restored: %v", err)
	}
	t.Log(err)
	if _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("second open: %v", err)
	}
}

// TestScanReadersSparesStartingReaders: a temporary reader file nobody
// has locked yet belongs to a reader between creating and locking it, so
// the writer leaves it alone; one older than tempGrace is a leftover.
func TestScanReadersSparesStartingReaders(t *testing.T) {
	dir := t.TempDir()
	rdir := filepath.Join(dir, readersDirName)
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		t.Fatal(err)
	}
	young := filepath.Join(rdir, ".1-young")
	old := filepath.Join(rdir, ".2-old")
	dead := filepath.Join(rdir, "3-dead")
	for _, p := range []string{young, old, dead} {
		if err := os.WriteFile(p, make([]byte, 8), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * tempGrace)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := scanReaders(dir); err != nil || ok {
		t.Fatalf("scan: ok=%v %v", ok, err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Fatalf("a starting reader's file was removed: %v", err)
	}
	for _, p := range []string{old, dead} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind (%v)", p, err)
		}
	}
}

// TestReadersStartBesideWriter opens and closes read-only stores from
// several goroutines while a writer commits (each commit scans readers/):
// no open fails.
func TestReadersStartBesideWriter(t *testing.T) {
	dir := t.TempDir()
	w := mustCreate(t, dir, 8, 4)
	defer w.Close()
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewSource(3))
		for {
			select {
			case <-stop:
				werr <- nil
				return
			default:
			}
			l := r.Intn(8)
			if n, _ := w.ListSize(l); n > 0 && r.Intn(2) == 0 {
				if err := w.UpdateEntries(l, r.Intn(n), []int64{1}, []byte{1, 2, 3, 4}); err != nil {
					werr <- err
					return
				}
			} else if _, err := w.AddEntries(l, []int64{1}, []byte{1, 2, 3, 4}); err != nil {
				werr <- err
				return
			}
		}
	}()
	errc := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 100; i++ {
				ro, err := OpenReadOnly(dir, nil)
				if err != nil {
					errc <- err
					return
				}
				if ro.Unregistered() != nil {
					errc <- fmt.Errorf("not registered: %v", ro.Unregistered())
					return
				}
				ro.Close()
			}
			errc <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

// TestWriterLockNamesPid: the lock file holds exactly the holder's pid
// (never empty, never a previous holder's longer pid left behind), and a
// holder that has not written its pid yet is described in words.
func TestWriterLockNamesPid(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, writerLockName), []byte("1234567890123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := lockWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, writerLockName))
	if want := strconv.Itoa(os.Getpid()) + "\n"; string(b) != want {
		t.Fatalf("lock file holds %q, want %q", b, want)
	}
	_, err = lockWriter(dir)
	if !errors.Is(err, ErrLocked) || !strings.HasSuffix(err.Error(), "writer pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	// The moment between taking the lock of a new file and writing to it.
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	_, err = lockWriter(dir)
	if !errors.Is(err, ErrLocked) || strings.HasSuffix(err.Error(), "pid ") || !strings.Contains(err.Error(), "not written yet") {
		t.Fatalf("lock held, no pid written: %v", err)
	}
	t.Log(err)
	f.Close()
}

// failRegister makes a read-only open fail to register, as without write
// access to readers/.
func failRegister(dir string) (*os.File, error) {
	return nil, &os.PathError{Op: "mkdir", Path: filepath.Join(dir, readersDirName), Err: syscall.EACCES}
}

// TestUnregisteredReader reads a store whose readers/ it cannot write:
// the open works and says so, and the writer, moving and clearing every
// list meanwhile, reuses none of the space an old view of the reader
// still reads; once the reader is gone the writer reuses space again.
// Refresh follows the writer across a compaction.
func TestUnregisteredReader(t *testing.T) {
	dir := t.TempDir()
	const nlist, cs = 8, 8
	w := mustCreate(t, dir, nlist, cs)
	defer func() { w.Close() }()
	r := rand.New(rand.NewSource(4))
	m := newModel(nlist, cs)
	churn(t, r, w, m, 20)
	ro, err := OpenReadOnly(dir, &Options{register: failRegister})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ro.Close() }()
	if ro.Unregistered() == nil || !strings.Contains(ro.Unregistered().Error(), "permission denied") {
		t.Fatalf("Unregistered() = %v", ro.Unregistered())
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, readersDirName)); len(entries) != 0 {
		t.Fatalf("readers/ holds %d files", len(entries))
	}
	v, err := ro.View()
	if err != nil {
		t.Fatal(err)
	}
	seen := m.clone()
	if err := compareView(v, seen); err != nil {
		t.Fatal(err)
	}
	// Move every list many times over: without the reader's lock, the
	// writer would reuse the slots v reads within a few commits.
	for i := 0; i < 10; i++ {
		b, _ := w.Begin()
		for l := 0; l < nlist; l++ {
			if len(m.lists[l]) == 0 {
				continue
			}
			if i%3 == 2 {
				_ = b.Clear(l)
				m.lists[l] = nil
				continue
			}
			ids, codes := randEntries(r, len(m.lists[l]), cs)
			if err := b.Update(l, 0, ids, codes); err != nil {
				t.Fatal(err)
			}
			m.lists[l] = toEnts(ids, codes, cs)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		churn(t, r, w, m, 3)
		publishDurably(t, w) // freed space may be reused from here on
	}
	if err := compareView(v, seen); err != nil {
		t.Fatalf("an unregistered reader's view changed under it: %v", err)
	}
	v.Release()
	if ch, err := ro.Refresh(); err != nil || !ch {
		t.Fatalf("refresh: %v %v", ch, err)
	}
	if err := compareStore(ro, m); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	churn(t, r, w, m, 3)
	if ch, err := ro.Refresh(); err != nil || !ch {
		t.Fatalf("refresh after compaction: %v %v", ch, err)
	}
	if err := compareStore(ro, m); err != nil {
		t.Fatal(err)
	}
	if !dataLockedByReaders(w.file.OS()) {
		t.Fatal("after the compaction the reader does not hold the new data file")
	}
	ro.Close()
	if dataLockedByReaders(w.file.OS()) {
		t.Fatal("the data file stays locked after the reader closed")
	}
	churn(t, r, w, m, 3)
	publishDurably(t, w)
	w.wmu.Lock()
	w.releasePending()
	pending := len(w.pending)
	w.wmu.Unlock()
	if pending != 0 {
		t.Fatalf("%d freed slots still wait after the reader left", pending)
	}
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
}

// publishDurably syncs what s published, as releasePending does once
// enough freed space waits for it.
func publishDurably(t testing.TB, s *Store) {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.publish(true); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnlyWithoutWriteAccess searches (reads) a store as a user who
// may not write its directory, in a child process: it reads unregistered
// and sees the writer's commits. Needs root (to run the child as nobody).
func TestReadOnlyWithoutWriteAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process; run without -short")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to run a child as another user")
	}
	base, err := os.MkdirTemp("", "shelf-ro-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "store")
	w := mustCreate(t, dir, 4, 4)
	defer w.Close()
	for l := 0; l < 4; l++ {
		if _, err := w.AddEntries(l, []int64{int64(l), int64(l + 10)}, make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary may lie in a directory only root can enter.
	bin := filepath.Join(base, "store.test")
	raw, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHELF_RO_CHILD_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	want := fmt.Sprintf("seq %d entries 8 unregistered", w.Seq())
	if !strings.Contains(string(out), want) {
		t.Fatalf("child says %q, want %q", out, want)
	}
	t.Logf("%s", out)
}

// roChild opens dir read-only and prints what it sees (TestMain).
func roChild(dir string) error {
	s, err := OpenReadOnly(dir, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.View()
	if err != nil {
		return err
	}
	defer v.Release()
	n := 0
	for l := 0; l < v.NumLists(); l++ {
		k, _ := v.ListLen(l)
		n += k
	}
	reg := "registered"
	if err := s.Unregistered(); err != nil {
		reg = "unregistered: " + err.Error()
	}
	fmt.Printf("seq %d entries %d %s\n", s.Seq(), n, reg)
	return nil
}

// TestReadOnlyOnFullDisk reads a store on a full file system (a small
// tmpfs): registering fails, reading works. Needs root (mount).
func TestReadOnlyOnFullDisk(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	dir := filepath.Join(mnt, "store")
	w, err := Create(dir, Options{NumLists: 4, CodeSize: 4, MapReserve: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if _, err := w.AddEntries(1, []int64{7, 8, 9}, make([]byte, 12)); err != nil {
		t.Fatal(err)
	}
	// Fill the disk.
	fill, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := fill.Write(chunk); err != nil {
			break
		}
	}
	fill.Close()
	ro, err := OpenReadOnly(dir, &Options{MapReserve: 1 << 20})
	if err != nil {
		t.Fatalf("read-only open on a full disk: %v", err)
	}
	t.Cleanup(func() { ro.Close() })
	if ro.Unregistered() == nil {
		t.Fatal("registered on a full disk?")
	}
	t.Log(ro.Unregistered())
	if n, _ := ro.ListSize(1); n != 3 || ro.Seq() != w.Seq() {
		t.Fatalf("reader sees %d entries at commit %d, writer has 3 at %d", n, ro.Seq(), w.Seq())
	}
}

// TestMissingDataFile: a data file deleted under an unchanged table is
// reported missing, by name, not as a store that keeps changing.
func TestMissingDataFile(t *testing.T) {
	dir := t.TempDir()
	s := mustCreate(t, dir, 4, 4)
	if _, err := s.AddEntries(0, []int64{1}, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, dataName(2))
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err := OpenReadOnly(dir, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), path) {
		t.Fatalf("read-only open without its data file: %v", err)
	}
	t.Log(err)
}

// FuzzDecodeLogRecord feeds arbitrary bytes to the log record decoder:
// it must never panic, and what it accepts must encode back to the same
// bytes.
func FuzzDecodeLogRecord(f *testing.F) {
	rec := logRecord{
		stateRec: stateRec{nlist: 8, gen: 2, fsize: headerSize + 4096, seq: 9},
		rows:     []logRow{{l: 3, e: entry{off: headerSize, cap: 4, size: 2, hwm: 3}}, {l: 5}},
		user:     []userChange{{key: "a", val: []byte("xyz")}, {key: "b"}, {key: "c", val: []byte{}}},
	}
	f.Add(rec.appendTo(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, ok := decodeLogRecord(b)
		if !ok {
			return
		}
		if got := r.appendTo(nil); !bytes.Equal(got, b[:n]) {
			t.Fatalf("round trip differs:\n%x\n%x", got, b[:n])
		}
	})
}

// FuzzOpenReadOnlyLog opens a real store whose table.log holds one
// fuzzed (checksum-correct) record after its header: the open fails with
// an error, or succeeds and every list reads without faulting and Check
// passes.
func FuzzOpenReadOnlyLog(f *testing.F) {
	dir := f.TempDir()
	s := mustCreate(f, dir, 6, 4)
	var payloads [][]byte
	for l := 0; l < 6; l += 2 {
		if _, err := s.AddEntries(l, make([]int64, 3+l), make([]byte, 4*(3+l))); err != nil {
			f.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, logName))
		if err != nil {
			f.Fatal(err)
		}
		p := logHeaderLen
		for {
			_, n, ok := decodeLogRecord(raw[p:])
			if !ok {
				break
			}
			payloads = append(payloads, raw[p+8:p+n])
			p += n
		}
	}
	hdr, err := os.ReadFile(filepath.Join(dir, logName))
	if err != nil {
		f.Fatal(err)
	}
	hdr = hdr[:logHeaderLen]
	s.abandon()
	for _, p := range payloads {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		rec := withCRC(payload)
		var lenb [4]byte
		binary.LittleEndian.PutUint32(lenb[:], uint32(len(payload)))
		log := append(append(append(append([]byte(nil), hdr...), lenb[:]...), rec[len(payload):]...), payload...)
		if err := os.WriteFile(filepath.Join(dir, logName), log, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := OpenReadOnly(dir, nil)
		if err != nil {
			return
		}
		defer s.Close()
		checkFuzzedStore(t, s)
	})
}

// noSyncChild adds entry k (id k, list k%4) in commit after commit with
// NoSync, printing each k once its commit returned, until killed.
func noSyncChild(dir string) error {
	s, err := Open(dir, &Options{NoSync: true})
	if err != nil {
		return err
	}
	for k := 0; ; k++ {
		if _, err := s.AddEntries(k%4, []int64{int64(k)}, []byte{1, 2, 3, 4}); err != nil {
			return err
		}
		fmt.Printf("committed %d\n", k)
	}
}

// TestNoSyncKill kills a writer that commits without syncing: Pebble
// keeps such commits in a buffer of the process and loses them, but the
// published table (written to the page cache before Commit returns) holds
// them, so the reopened store has every commit that returned, as NoSync
// promises for a process crash.
func TestNoSyncKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; run without -short")
	}
	restored := 0
	for round := 0; round < 3; round++ {
		dir := t.TempDir()
		s := mustCreate(t, dir, 4, 4)
		s.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SHELF_NOSYNC_CHILD_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		last := -1
		for sc.Scan() {
			if _, err := fmt.Sscanf(sc.Text(), "committed %d", &last); err == nil && last == 200 {
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		_ = cmd.Wait()
		if last < 200 {
			t.Fatalf("the writer stopped at %d: %s", last, stderr.String())
		}
		s, err = Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Recovered() != "" {
			restored++
		}
		seen := map[int64]bool{}
		for l := 0; l < 4; l++ {
			ids, _, err := s.ReadList(l)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				seen[id] = true
			}
		}
		for k := 0; k <= last; k++ {
			if !seen[int64(k)] {
				t.Fatalf("round %d: commit of entry %d returned, the reopened store lacks it (it has %d entries)", round, k, len(seen))
			}
		}
		s.Close()
	}
	t.Logf("%d of 3 reopens restored commits Pebble had lost", restored)
}
