package tools

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

// limitRun runs the binary with at most 8 GiB of address space and a
// minute, so that a size that is not bounded fails the test (a crash, a
// panic, a kill) instead of taking the machine's memory.
func limitRun(t *testing.T, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", `ulimit -v 8388608 && exec "$0" "$@"`, bin}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("shelf %s: still running after a minute", strings.Join(args, " "))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}

// with returns a copy of args with more appended.
func with(args []string, more ...string) []string {
	return append(append([]string(nil), args...), more...)
}

// TestSizeLimits gives every size flag values that are negative, absurd or
// too large for the data, and checks each is refused with a usage error
// (exit 2) of one line naming the flag: never a panic, an out-of-memory
// crash or a hang.
func TestSizeLimits(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	const n, d, nq = 3000, 16, 10
	base := synth.Clustered(n, d, 30, 3)
	queries := synth.Queries(nq, d, 30, 3)
	baseF, qF := filepath.Join(dir, "base.fvecs"), filepath.Join(dir, "q.fvecs")
	idx := filepath.Join(dir, "idx")
	if err := vecio.WriteFvecs(baseF, base); err != nil {
		t.Fatal(err)
	}
	if err := vecio.WriteFvecs(qF, queries); err != nil {
		t.Fatal(err)
	}
	ix, err := ivf.NewFromFactory("IVF16,PQ4", d, ivf.L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(base.Data, base.N, &ivf.TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ix.ToDisk(idx); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(base.Data, base.N); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	gt := filepath.Join(dir, "gt.ivecs")
	search := []string{"search", "--index", idx, "--queries", qF}
	groundtruth := []string{"groundtruth", "--data", baseF, "--queries", qF, "--out", gt}
	demo := []string{"demo", "--quiet", "--dir", filepath.Join(dir, "demo")}
	rangeSearch := []string{"range-search", "--index", idx, "--queries", qF, "--radius", "1e30"}
	encode := []string{"encode", "--index", idx, "--data", baseF, "--out", filepath.Join(dir, "blocks"), "--quiet"}
	const (
		maxInt  = "9223372036854775807"
		maxUint = "18446744073709551615"
	)
	cases := []struct {
		args []string
		flag string // named on the one line of stderr
	}{
		{with(search, "--k", "0"), "--k"},
		{with(search, "--k", "-1"), "--k"},
		{with(search, "--k", "2147483648"), "--k"},
		{with(search, "--k", "4611686018427387904"), "--k"},
		{with(search, "--k", maxInt), "--k"},
		{with(search, "--k", maxUint), "-k"},      // the flag package: "invalid value ... for flag -k"
		{with(search, "--k", "268435456"), "--k"}, // allowed alone, not for 10 queries
		{with(search, "--threads", "-1"), "--threads"},
		{with(search, "--threads", maxInt), "--threads"},
		{with(search, "--nprobe", "0"), "--nprobe"},
		{with(search, "--nprobe", "99999999999999999999"), "--nprobe"},
		{with(search, "--gpu-shards", maxInt), "--gpu-shards"},
		{with(search, "--gpu-cache-mb", maxInt), "--gpu-cache-mb"},
		{with(search, "--memory", "0"), "--memory"},
		{with(search, "--memory", "-1G"), "--memory"},
		{with(search, "--memory", "lots"), "--memory"},
		{with(search, "--memory", "99999999T"), "--memory"},
		{with(search, "--memory", "1M"), "--memory"}, // less than the search needs
		{with(search, "--io-depth", maxInt), "--io-depth"},
		{with(search, "--batch", "-1"), "--batch"},
		{with(search, "--repeat", "0"), "--repeat"},
		{with(groundtruth, "--k", maxInt), "--k"},
		{with(groundtruth, "--k", "2147483648"), "--k"},
		{with(groundtruth, "--k", "268435456"), "--k"},
		{with(groundtruth, "--threads", maxInt), "--threads"},
		{with(demo, "--nq", maxInt), "--nq"},
		{with(demo, "--nq", "1000000000"), "--nq"},
		{with(demo, "--n", maxInt), "--n"},
		{with(demo, "--n", "4000000000000"), "--n"},
		{with(demo, "--dim", maxInt), "--dim"},
		{with(demo, "--dim", "1000000"), "--dim"},
		{with(demo, "--nlist", maxInt), "--nlist"},
		{with(demo, "--nlist", "-4"), "--nlist"},
		{with(demo, "--n", "1000", "--nlist", "4096"), "--nlist"},
		{with(demo, "--m", maxInt), "--m"},
		{with(demo, "--m", "5"), "--m"},
		{with(rangeSearch, "--max-results", "0"), "--max-results"},
		{with(rangeSearch, "--max-results", maxInt), "--max-results"},
		{with(rangeSearch, "--max-results", "268435457"), "--max-results"},
		{with(rangeSearch, "--max-results", "100"), "--max-results"}, // 10 queries x 3000 vectors within the radius
		{with(rangeSearch, "--nprobe", "0"), "--nprobe"},
		{with(rangeSearch, "--threads", maxInt), "--threads"},
		{with(rangeSearch, "--radius", "1e39"), "--radius"},
		{with(encode, "--shards", "-1"), "--shards"},
		{with(encode, "--shard", "auto", "--shards", maxInt), "--shard auto"}, // no scheduler's variables
	}
	for _, c := range cases {
		name := strings.Join(c.args[len(c.args)-2:], " ")
		if c.args[0] != "search" {
			name = c.args[0] + " " + name
		}
		if c.args[0] == "encode" {
			// --shard auto reads the scheduler's variables: none here.
			for _, k := range shardVars {
				t.Setenv(k, "")
			}
		}
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			code, out, errOut := limitRun(t, bin, c.args...)
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			if code != 2 || len(lines) != 1 || strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine") {
				t.Fatalf("exit %d after %v, stderr (%d lines):\n%s\nstdout:\n%s", code, time.Since(start), len(lines), errOut, out)
			}
			if !strings.Contains(lines[0], c.flag) {
				t.Fatalf("stderr does not name %s: %s", c.flag, lines[0])
			}
			if !strings.HasPrefix(lines[0], "shelf "+c.args[0]+": ") {
				t.Fatalf("stderr: %s", lines[0])
			}
		})
	}

	// Sizes beyond the data that are fine: k above the vectors held (padded
	// with -1, as FAISS does), nprobe above nlist, one block for a huge
	// --block-size.
	t.Run("fine", func(t *testing.T) {
		for _, args := range [][]string{
			with(search, "--k", "5000", "--nprobe", maxInt, "--json"),
			with(groundtruth, "--k", "5000"),
			with(rangeSearch, "--nprobe", maxInt, "--max-results", "268435456", "--json"),
			{"encode", "--index", idx, "--data", baseF, "--out", filepath.Join(dir, "blocks"), "--block-size", maxInt, "--shard", "0/" + maxInt, "--quiet"},
		} {
			code, out, errOut := limitRun(t, bin, args...)
			if code != 0 {
				t.Fatalf("shelf %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
			}
			if args[0] == "encode" && !strings.Contains(out, "1 blocks written") {
				t.Fatalf("encode with a huge block size: %s", out)
			}
		}
		gn, gd, ids, err := vecio.ReadInt32(gt)
		if err != nil || gn != nq || gd != 5000 || ids[n] != -1 || ids[n-1] < 0 {
			t.Fatalf("groundtruth --k 5000 of %d vectors: %dx%d, %v", n, gn, gd, err)
		}
	})
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"1": 1, "4096": 4096, "1K": 1 << 10, "1k": 1 << 10, "64M": 64 << 20, "64MiB": 64 << 20, "64MB": 64 << 20,
		"1G": 1 << 30, "1GiB": 1 << 30, "1.5G": 3 << 29, "2T": 2 << 40, " 512M ": 512 << 20,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1X", "G", "1e30", "NaN", "Inf", "4000000000T"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}
