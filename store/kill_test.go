package store

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var kills = flag.Int("store.kills", 20, "SIGKILLs in TestCrashKill (stress: 200 or more)")

const (
	killLists    = 16
	killCodeSize = 8
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("SHELF_WRITER_CHILD_DIR"); dir != "" {
		if err := writerChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "writer child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	if dir := os.Getenv("SHELF_NOSYNC_CHILD_DIR"); dir != "" {
		if err := noSyncChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "no-sync child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	if dir := os.Getenv("SHELF_RO_CHILD_DIR"); dir != "" {
		if err := roChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "read-only child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	if dir := os.Getenv("SHELF_KILL_CHILD_DIR"); dir != "" {
		start, _ := strconv.Atoi(os.Getenv("SHELF_KILL_CHILD_START"))
		if err := killChild(dir, start); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type killPart struct{ list, n int }

// killPlan is what batch k adds: deterministic, so the parent knows what
// every committed batch must have left behind.
func killPlan(k int) (parts []killPart, merge bool) {
	r := rand.New(rand.NewSource(int64(k)))
	merge = k%7 == 3
	for i := 1 + r.Intn(4); i > 0; i-- {
		parts = append(parts, killPart{r.Intn(killLists), 1 + r.Intn(300)})
	}
	return parts, merge
}

func killCode(id int64) []byte {
	b := make([]byte, killCodeSize)
	binary.LittleEndian.PutUint64(b, uint64(id)*0x9E3779B97F4A7C15)
	return b
}

// killChild commits batches start, start+1, ... forever, printing each
// batch number once its commit returned, until the parent kills it.
func killChild(dir string, start int) error {
	s, err := Open(dir, nil)
	if err != nil {
		return err
	}
	for k := start; ; k++ {
		parts, merge := killPlan(k)
		j := 0
		entries := func(n int) ([]int64, []byte) {
			ids := make([]int64, n)
			var codes []byte
			for i := range ids {
				ids[i] = int64(k)<<20 | int64(j)
				j++
				codes = append(codes, killCode(ids[i])...)
			}
			return ids, codes
		}
		if merge {
			src := &memSource{cs: killCodeSize, lists: make([][]ent, killLists)}
			for _, p := range parts {
				ids, codes := entries(p.n)
				src.lists[p.list] = append(src.lists[p.list], toEnts(ids, codes, killCodeSize)...)
			}
			if _, err := s.MergeFrom([]Source{src}, nil); err != nil {
				return err
			}
		} else {
			b, err := s.Begin()
			if err != nil {
				return err
			}
			for _, p := range parts {
				ids, codes := entries(p.n)
				if _, err := b.Add(p.list, ids, codes); err != nil {
					return err
				}
				// Rewrite one entry with the same content: a copy-on-write
				// relocation inside the batch.
				if n, _ := b.ListLen(p.list); n > 0 {
					if err := b.Update(p.list, n-1, ids[len(ids)-1:], codes[len(codes)-killCodeSize:]); err != nil {
						return err
					}
				}
			}
			if err := b.Commit(); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stdout, "committed %d\n", k)
		if k%11 == 10 {
			if _, err := s.Compact(); err != nil {
				return err
			}
		}
	}
}

// TestCrashKill kills a writing child process with SIGKILL at random
// moments, reopens the store each time, and checks that every batch the
// child saw committed is there intact and no batch is half there.
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; run without -short")
	}
	seed := *modelSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	s := mustCreate(t, dir, killLists, killCodeSize)
	s.Close()
	next := 0
	maxSeen := -1
	for round := 0; round < *kills; round++ {
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
		seen := make(chan int, 1<<16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var k int
				if _, err := fmt.Sscanf(sc.Text(), "committed %d", &k); err == nil {
					seen <- k
				}
			}
			close(seen)
		}()
		time.Sleep(time.Duration(20+r.Intn(250)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		last := next - 1
		for k := range seen {
			last = k
		}
		werr := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child ended on its own (%v): %s", round, werr, stderr.String())
		}
		if last > maxSeen {
			maxSeen = last
		}
		// Reopen and check.
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		if err := s.Check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		count := map[int]map[int]int{} // batch -> list -> entries
		v, _ := s.View()
		for l := 0; l < killLists; l++ {
			ids, codes, _ := v.ReadList(l)
			for i, id := range ids {
				if string(codes[i*killCodeSize:(i+1)*killCodeSize]) != string(killCode(id)) {
					t.Fatalf("round %d: list %d entry %d: id %d has a wrong code", round, l, i, id)
				}
				k := int(id >> 20)
				if count[k] == nil {
					count[k] = map[int]int{}
				}
				count[k][l]++
			}
		}
		v.Release()
		top := -1
		for k := range count {
			if k > top {
				top = k
			}
		}
		if top < last {
			t.Fatalf("round %d: batch %d was reported committed but the store ends at batch %d", round, last, top)
		}
		if top > last+1 {
			t.Fatalf("round %d: store holds batch %d but the child only got to %d", round, top, last)
		}
		for k := 0; k <= top; k++ {
			parts, _ := killPlan(k)
			want := map[int]int{}
			for _, p := range parts {
				want[p.list] += p.n
			}
			if fmt.Sprint(want) != fmt.Sprint(count[k]) {
				t.Fatalf("round %d: batch %d is %v in the store, want %v (torn or lost)", round, k, count[k], want)
			}
		}
		s.Close()
		next = top + 1
	}
	t.Logf("%d kills, %d batches committed", *kills, next)
	if next == 0 {
		t.Fatal("no batch was ever committed: the child did not get to work")
	}
}
