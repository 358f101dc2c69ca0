package faisstest

import (
	"os"
	"os/exec"
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
