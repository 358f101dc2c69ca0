package store

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const crossLists = 16

// writerChild writes lists in the concurrent test's verifiable layout
// (entry j of list l has id l<<32|j and a code derived from it) for a
// while: adds, copy-on-write updates, file growth and compactions. It
// prints "ready" after its first commit and "done N" at the end.
func writerChild(dir string) error {
	s, err := Open(dir, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	r := rand.New(rand.NewSource(5))
	sizes := make([]int, crossLists)
	deadline := time.Now().Add(2 * time.Second)
	commits := 0
	for time.Now().Before(deadline) {
		b, err := s.Begin()
		if err != nil {
			return err
		}
		for k := 1 + r.Intn(3); k > 0; k-- {
			l := r.Intn(crossLists)
			n := 1 + r.Intn(200)
			ids := make([]int64, n)
			var codes []byte
			for i := range ids {
				ids[i] = int64(l)<<32 | int64(sizes[l]+i)
				codes = append(codes, concCode(ids[i], 0)...)
			}
			if _, err := b.Add(l, ids, codes); err != nil {
				return err
			}
			sizes[l] += n
			j := r.Intn(sizes[l])
			id := int64(l)<<32 | int64(j)
			if err := b.Update(l, j, []int64{id}, concCode(id, byte(1+r.Intn(200)))); err != nil {
				return err
			}
		}
		if err := b.Commit(); err != nil {
			return err
		}
		commits++
		if commits == 1 {
			fmt.Println("ready")
		}
		if r.Intn(30) == 0 {
			if _, err := s.Compact(); err != nil {
				return err
			}
		}
	}
	fmt.Printf("done %d\n", commits)
	return nil
}

// TestCrossProcessReader reads a store with OpenReadOnly while another
// process writes, relocates and compacts it: every list the reader sees is
// a consistent snapshot, sizes never go back, and Refresh sees progress.
// This is the path Pebble's directory lock forces on read-only processes
// (table.snap + readers/), tested across a real process boundary.
func TestCrossProcessReader(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process; run without -short")
	}
	dir := t.TempDir()
	s := mustCreate(t, dir, crossLists, concCS)
	s.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHELF_WRITER_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if l := <-lines; l != "ready" {
		cmd.Wait()
		t.Fatalf("writer did not start: %q %s", l, stderr.String())
	}
	ro, err := OpenReadOnly(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	last := make([]int, crossLists)
	changes, reads := 0, 0
	check := func() {
		v, err := ro.View()
		if err != nil {
			t.Fatal(err)
		}
		defer v.Release()
		for l := 0; l < crossLists; l++ {
			ids, codes, err := v.ReadList(l)
			if err == nil {
				err = checkList(l, ids, codes)
			}
			if err == nil && len(ids) < last[l] {
				err = fmt.Errorf("list %d went back from %d to %d entries", l, last[l], len(ids))
			}
			if err != nil {
				t.Fatalf("read-only view of commit %d: %v", v.Seq(), err)
			}
			last[l] = len(ids)
			reads++
		}
	}
	done := ""
	for done == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				done = "eof"
			} else if strings.HasPrefix(l, "done") {
				done = l
			}
		default:
		}
		changed, err := ro.Refresh()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if changed {
			changes++
		}
		check()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer: %v: %s", err, stderr.String())
	}
	// After the writer closed, the reader catches up with its last commit.
	if _, err := ro.Refresh(); err != nil {
		t.Fatal(err)
	}
	check()
	w, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for l := 0; l < crossLists; l++ {
		n, _ := w.ListSize(l)
		if n != last[l] {
			t.Fatalf("list %d: reader ends at %d entries, writer committed %d", l, last[l], n)
		}
	}
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	t.Logf("writer: %s; reader: %d refreshes saw new commits, %d list reads", done, changes, reads)
	if changes < 2 {
		t.Fatalf("the reader saw only %d changes while the writer ran", changes)
	}
}
