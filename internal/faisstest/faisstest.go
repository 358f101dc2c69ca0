package faisstest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Python is the interpreter with Debian's FAISS (python3-faiss).
const Python = "/usr/bin/python3"

// Require fails the test when FAISS is missing: a comparison that cannot
// run must not pass. SHELF_SKIP_FAISS=1 turns that into a visible skip on
// machines that cannot install it.
func Require(t testing.TB) {
	t.Helper()
	if err := exec.Command(Python, "-c", "import faiss, numpy").Run(); err != nil {
		if os.Getenv("SHELF_SKIP_FAISS") == "1" {
			t.Skip("FAISS not installed and SHELF_SKIP_FAISS=1: comparison NOT run")
		}
		t.Fatalf("FAISS is needed for this test (apt-get install -y python3-faiss python3-numpy, or set SHELF_SKIP_FAISS=1 to skip it visibly): %v", err)
	}
}

// RunIO runs bench/faiss_io.py on tasks (see its usage) in dir, where
// relative paths of the tasks are resolved; a failure fails the test.
func RunIO(t testing.TB, dir string, tasks ...map[string]any) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "bench", "faiss_io.py"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(tasks)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "tasks-*.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(spec)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Python, script, f.Name())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OMP_WAIT_POLICY=PASSIVE")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("faiss_io.py: %v\n%s", err, out)
	}
}
