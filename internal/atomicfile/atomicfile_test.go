package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// noTemp fails if the temporary of path exists.
func noTemp(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(TempName(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary %s left behind (%v)", TempName(path), err)
	}
}

// wantMode returns the mode a file created with perm gets here (the
// umask applies).
func wantMode(t *testing.T, perm os.FileMode) os.FileMode {
	t.Helper()
	ctl := filepath.Join(t.TempDir(), "control")
	f, err := os.OpenFile(ctl, os.O_CREATE|os.O_WRONLY, perm)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return modeOf(t, ctl)
}

func modeOf(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.bin")
	if err := Write(path, 0o600, func(w io.Writer) error {
		_, err := io.WriteString(w, "hello")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "hello" {
		t.Fatalf("file holds %q", got)
	}
	if got, want := modeOf(t, path), wantMode(t, 0o600); got != want {
		t.Fatalf("mode %v, want %v", got, want)
	}
	noTemp(t, path)
}

// TestReplaceWhole replaces a longer file with a shorter one: the name
// then holds exactly the new bytes, and a reader that opened the old file
// still reads it whole.
func TestReplaceWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.bin")
	old := strings.Repeat("old content ", 1000)
	if err := WriteBytes(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := WriteBytes(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "new" {
		t.Fatalf("file holds %q, want the new content alone", got)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != old {
		t.Fatalf("a reader of the old file read %d bytes of %d", len(b), len(old))
	}
	noTemp(t, path)
}

// TestFailedFill checks that a failing fill returns its error and leaves
// no file, no temporary, and an existing file as it was.
func TestFailedFill(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("boom")
	fill := func(w io.Writer) error {
		w.Write(bytes.Repeat([]byte{7}, 3<<20)) // more than the buffer: some reaches the temporary
		return boom
	}
	path := filepath.Join(dir, "new.bin")
	if err := Write(path, 0o644, fill); !errors.Is(err, boom) {
		t.Fatalf("Write returned %v, want the fill's error", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed write left %s (%v)", path, err)
	}
	noTemp(t, path)

	path = filepath.Join(dir, "old.bin")
	if err := WriteBytes(path, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, 0o644, fill); !errors.Is(err, boom) {
		t.Fatalf("Write returned %v, want the fill's error", err)
	}
	if got := readFile(t, path); got != "kept" {
		t.Fatalf("a failed write changed the file to %d bytes", len(got))
	}
	noTemp(t, path)
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want old.bin alone", len(ents))
	}
}

// TestPanickingFill checks that a fill that panics leaves no temporary.
func TestPanickingFill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.bin")
	func() {
		defer func() { recover() }()
		Write(path, 0o644, func(w io.Writer) error { panic("fill") })
	}()
	noTemp(t, path)
}

// TestCreateCommitAbort covers the streaming form: positioned writes
// through the *os.File, Abort leaving nothing, Commit once only, NoSync,
// and a temporary left by a crash replaced by the next write.
func TestCreateCommitAbort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.bin")
	f, err := Create(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("xx"), 3)
	f.Abort()
	f.Abort()
	if err := f.Commit(); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an aborted write left %s (%v)", path, err)
	}
	noTemp(t, path)

	if err := os.WriteFile(TempName(path), []byte("left by a crash"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err = Create(path, 0o644); err != nil {
		t.Fatal(err)
	}
	f.NoSync = true
	if _, err := f.WriteAt([]byte("cd"), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("ab"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("second Commit succeeded")
	}
	f.Abort() // does nothing after Commit
	if got := readFile(t, path); got != "abcd" {
		t.Fatalf("file holds %q", got)
	}
	if got := modeOf(t, path); got != wantMode(t, 0o644) {
		t.Fatalf("mode %v: the crash's temporary kept its mode", got)
	}
	noTemp(t, path)
}

func TestCreateInMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "a.bin")
	if err := WriteBytes(path, []byte("x"), 0o644); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("WriteBytes into a missing directory: %v", err)
	}
}
