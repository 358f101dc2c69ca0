package tools

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// listBytesAt returns where the codes and the ids of list l of the index
// in dir lie in its data file, found by their contents.
func listBytesAt(t *testing.T, dir string, l int) (file string, codesOff, idsOff int) {
	t.Helper()
	list := encReadLists(t, dir)[l]
	if len(list) == 0 {
		t.Fatalf("list %d is empty", l)
	}
	var codes, ids []byte
	for _, e := range list {
		codes = append(codes, e.code...)
		ids = binary.LittleEndian.AppendUint64(ids, uint64(e.id))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "lists", "lists.*.data"))
	if len(files) != 1 {
		t.Fatalf("data files %v", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	codesOff, idsOff = bytes.Index(data, codes), bytes.Index(data, ids)
	if codesOff < 0 || idsOff < 0 {
		t.Fatalf("list %d not found in %s", l, files[0])
	}
	return files[0], codesOff, idsOff
}

func flipByte(t *testing.T, file string, off int) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestVerifyBinary runs `shelf verify` on an index, then on the same index
// with a byte of one list's codes and a byte of another list's ids flipped
// on disk: it names both lists, one line each, and exits 1.
func TestVerifyBinary(t *testing.T) {
	bin := buildShelf(t)
	dir, ntotal := buildFragmentedIndex(t)

	out, err := exec.Command(bin, "verify", "--index", dir).Output()
	if want := fmt.Sprintf("32 lists verified (%d entries)\n", ntotal); err != nil || string(out) != want {
		t.Fatalf("shelf verify of a sound index: %v\n%s(want %q)", err, out, want)
	}

	file, codesOff, _ := listBytesAt(t, dir, 3)
	flipByte(t, file, codesOff+5)
	_, _, idsOff := listBytesAt(t, dir, 20)
	flipByte(t, file, idsOff+13)

	cmd := exec.Command(bin, "verify", "--index", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if exitCode(err) != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], "list 3: codes at [") || !strings.HasPrefix(lines[1], "list 20: ids at [") ||
		!strings.Contains(lines[0], file) || !strings.Contains(stderr.String(), "2 of 32 lists damaged") {
		t.Fatalf("shelf verify of a damaged index: exit %d\n%s%s", exitCode(err), out, stderr.String())
	}
	t.Logf("%s%s", out, stderr.String())

	out, err = exec.Command(bin, "verify", "--index", dir, "--json").Output()
	var rep verifyReport
	if exitCode(err) != 1 || json.Unmarshal(out, &rep) != nil {
		t.Fatalf("shelf verify --json: exit %d\n%s", exitCode(err), out)
	}
	if rep.Lists != 32 || rep.Entries != ntotal || len(rep.Damaged) != 2 {
		t.Fatalf("shelf verify --json: %+v", rep)
	}
	d := rep.Damaged[1]
	if d.List != 20 || d.Part != "ids" || d.File != file || !(int(d.Offset) <= idsOff+13 && idsOff+13 < int(d.End)) || d.CRCRead == d.CRCTable {
		t.Fatalf("damage %+v, want list 20's ids around byte %d of %s", d, idsOff+13, file)
	}

	if _, err := exec.Command(bin, "verify").Output(); exitCode(err) != 2 {
		t.Fatalf("shelf verify without --index: exit %d, want 2", exitCode(err))
	}
	if out, err := exec.Command(bin, "verify", "--help").Output(); err != nil || !strings.Contains(string(out), "shelf verify --index") {
		t.Fatalf("shelf verify --help: %v\n%s", err, out)
	}
}
