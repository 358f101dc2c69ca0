package tools

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// TestBuildBalance checks that --balance reaches the coarse k-means (the
// lists of a balanced build are more even) and that a bad eps is a usage
// error.
func TestBuildBalance(t *testing.T) {
	dir := t.TempDir()
	const n, d = 8000, 16
	baseF := filepath.Join(dir, "base.fvecs")
	if err := vecio.WriteFvecs(baseF, synth.Clustered(n, d, 20, 7)); err != nil {
		t.Fatal(err)
	}
	imb := map[string]float64{}
	for _, eps := range []string{"0", "0.01"} {
		idx := filepath.Join(dir, "idx"+eps)
		var stdout, stderr bytes.Buffer
		if code := Main([]string{"build", "--data", baseF, "--index", idx, "--factory", "IVF32,PQ4", "--balance", eps, "--quiet"}, &stdout, &stderr); code != 0 {
			t.Fatalf("build --balance %s: exit %d: %s", eps, code, stderr.String())
		}
		ix, err := ivf.OpenReadOnly(idx)
		if err != nil {
			t.Fatal(err)
		}
		st, err := ix.StorageStats()
		ix.Close()
		if err != nil {
			t.Fatal(err)
		}
		imb[eps] = st.ImbalanceFactor
	}
	t.Logf("imbalance factor: %v", imb)
	if imb["0.01"] >= imb["0"] || imb["0.01"] > 1.15 {
		t.Errorf("imbalance factor %.3f with --balance 0.01, %.3f without: want lower, and <= 1.15", imb["0.01"], imb["0"])
	}
	for _, bad := range []string{"-1", "NaN", "x"} {
		var stdout, stderr bytes.Buffer
		code := Main([]string{"train", "--data", baseF, "--index", filepath.Join(dir, "bad"), "--factory", "IVF32,PQ4", "--balance", bad}, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "balance") {
			t.Errorf("--balance %s: exit %d, stderr %q; want a usage error naming --balance", bad, code, stderr.String())
		}
	}
}
