package tools

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// TestSearchUnderMemoryCap: an index whose list file is twice the memory
// cap is searched by the real binary inside a cgroup with that cap and a
// cold page cache (bench/capped.sh, the harness of the out-of-core
// benchmarks): shelf search --memory reads the lists from disk and
// returns exactly the results of an uncapped search through the memory
// map, is not OOM-killed, and the group's peak, page cache included,
// stays under the cap. Needs root and cgroup v1's memory controller.
func TestSearchUnderMemoryCap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: a memory cgroup cannot be made (the test runs in .ci/run as root)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skip("no cgroup v1 memory controller at /sys/fs/cgroup/memory")
	}
	if testing.Short() {
		t.Skip("-short: builds a 3.5M-vector index")
	}
	const (
		n, d, nq = 3_500_000, 64, 300
		cap      = "64M"
	)
	dir := t.TempDir()
	idx := filepath.Join(dir, "idx")
	mix := synth.New(d, 200, 9)
	ix, err := ivf.NewFromFactory("IVF256,PQ32", d, ivf.L2)
	if err != nil {
		t.Fatal(err)
	}
	sample := mix.Sample(40_000, 1)
	if err := ix.Train(sample.Data, sample.N, &ivf.TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ix.ToDisk(idx); err != nil {
		t.Fatal(err)
	}
	const chunk = 500_000
	for lo := 0; lo < n; lo += chunk {
		x := mix.Sample(chunk, uint64(100+lo/chunk))
		if _, err := ix.Add(x.Data, x.N); err != nil {
			t.Fatal(err)
		}
	}
	st, err := ix.StorageStats()
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if st.DataBytes < 2*64<<20 {
		t.Fatalf("lists of %d bytes: want twice the cap at least", st.DataBytes)
	}
	q := filepath.Join(dir, "q.fvecs")
	if err := vecio.WriteFvecs(q, mix.Sample(nq, 7)); err != nil {
		t.Fatal(err)
	}
	bin := buildShelf(t)
	search := []string{"search", "--index", idx, "--queries", q, "--k", "20", "--nprobe", "8", "--json"}
	want := filepath.Join(dir, "want.ivecs")
	if out, err := exec.Command(bin, append(search, "--out", want)...).CombinedOutput(); err != nil {
		t.Fatalf("uncapped search: %v\n%s", err, out)
	}
	for _, batch := range []string{"0", "1"} {
		got := filepath.Join(dir, "got"+batch+".ivecs")
		report := filepath.Join(dir, "report.json")
		cmd := exec.Command("bash", "../bench/capped.sh", cap, "--cold", "--", bin)
		cmd.Args = append(cmd.Args, append(search, "--memory", "56M", "--batch", batch, "--out", got)...)
		cmd.Env = append(os.Environ(), "CAPPED_REPORT="+report)
		out, err := cmd.CombinedOutput()
		t.Logf("batch %s:\n%s", batch, out)
		if err != nil {
			t.Fatalf("capped search: %v", err)
		}
		var r struct {
			Limit    int64 `json:"limit"`
			Peak     int64 `json:"peak"`
			OOMKills int64 `json:"oom_kills"`
		}
		b, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.OOMKills != 0 || r.Peak >= r.Limit || r.Limit != 64<<20 {
			t.Fatalf("capped search: %+v (want no OOM kill, the peak under the limit)", r)
		}
		a, _ := os.ReadFile(want)
		g, _ := os.ReadFile(got)
		if len(a) == 0 || !bytes.Equal(a, g) {
			t.Fatalf("batch %s: the capped search's results differ from the uncapped one's", batch)
		}
	}
}
