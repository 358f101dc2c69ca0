package tools

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
)

// shardVars are every variable --shard auto reads.
var shardVars = []string{envSlurmID, envSlurmCount, envSlurmMin, envSlurmMax, envSlurmStep, envSlurmJob, envK8sIndex}

// setShardEnv sets the process environment to exactly vars among
// shardVars (the others unset, whatever the test runs under); the test
// restores them.
func setShardEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, k := range shardVars {
		t.Setenv(k, "") // recorded for restoring
		os.Unsetenv(k)
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
}

// TestResolveShard sets the variables of a Slurm job array and of a
// Kubernetes indexed Job in the environment and checks the rank and count
// --shard auto takes from them, and the errors for missing or inconsistent
// ones.
func TestResolveShard(t *testing.T) {
	type env = map[string]string
	for _, c := range []struct {
		name        string
		vars        env
		shard       string
		shards      int
		rank, count int
		err         string // a part of the error; "" for none
	}{
		{"explicit", nil, "2/5", 0, 2, 5, ""},
		{"explicit agrees with --shards", nil, "2/5", 5, 2, 5, ""},
		{"explicit, --shards disagrees", nil, "2/5", 4, 0, 0, "--shards 4 disagrees"},
		{"explicit bad", nil, "5/5", 0, 0, 0, "0 <= i < n"},
		// sbatch --array=0-3: ids 0..3.
		{"slurm from 0", env{envSlurmID: "2", envSlurmCount: "4", envSlurmMin: "0", envSlurmMax: "3", envSlurmJob: "77"}, "auto", 0, 2, 4, ""},
		{"slurm without MIN", env{envSlurmID: "3", envSlurmCount: "4"}, "auto", 0, 3, 4, ""},
		// sbatch --array=1-4: ids 1..4 are ranks 0..3.
		{"slurm from 1, first", env{envSlurmID: "1", envSlurmCount: "4", envSlurmMin: "1", envSlurmMax: "4"}, "auto", 0, 0, 4, ""},
		{"slurm from 1, last", env{envSlurmID: "4", envSlurmCount: "4", envSlurmMin: "1", envSlurmMax: "4"}, "auto", 0, 3, 4, ""},
		// sbatch --array=10-16:2: ids 10, 12, 14, 16.
		{"slurm with a step", env{envSlurmID: "14", envSlurmCount: "4", envSlurmMin: "10", envSlurmMax: "16", envSlurmStep: "2"}, "auto", 0, 2, 4, ""},
		{"slurm count agrees with --shards", env{envSlurmID: "1", envSlurmCount: "4"}, "auto", 4, 1, 4, ""},
		{"slurm without COUNT, --shards", env{envSlurmID: "1"}, "auto", 3, 1, 3, ""},
		{"slurm without COUNT", env{envSlurmID: "1"}, "auto", 0, 0, 0, envSlurmCount + " is not"},
		{"slurm id not below count", env{envSlurmID: "4", envSlurmCount: "4"}, "auto", 0, 0, 0, "is not below " + envSlurmCount + "=4"},
		{"slurm id past the array", env{envSlurmID: "6", envSlurmCount: "4", envSlurmMin: "2"}, "auto", 0, 0, 0, "task 4 of an array of"},
		{"slurm id below MIN", env{envSlurmID: "0", envSlurmCount: "4", envSlurmMin: "1"}, "auto", 0, 0, 0, "is not one of the array's ids"},
		{"slurm id off the step", env{envSlurmID: "11", envSlurmCount: "4", envSlurmMin: "10", envSlurmStep: "2"}, "auto", 0, 0, 0, "is not one of the array's ids"},
		// sbatch --array=1,3,7: three tasks, ids not a range.
		{"slurm list of ids", env{envSlurmID: "3", envSlurmCount: "3", envSlurmMin: "1", envSlurmMax: "7"}, "auto", 0, 0, 0, "are not its 3 tasks"},
		{"slurm --shards disagrees", env{envSlurmID: "1", envSlurmCount: "4"}, "auto", 8, 0, 0, "--shards 8 disagrees with " + envSlurmCount + "=4"},
		{"slurm id not a number", env{envSlurmID: "x", envSlurmCount: "4"}, "auto", 0, 0, 0, envSlurmID + `="x"`},
		{"slurm count 0", env{envSlurmID: "0", envSlurmCount: "0"}, "auto", 0, 0, 0, "at least one task"},
		{"slurm job, not an array", env{envSlurmJob: "77"}, "auto", 0, 0, 0, "not a job array"},
		// A Kubernetes indexed Job of 3 completions.
		{"k8s", env{envK8sIndex: "2"}, "auto", 3, 2, 3, ""},
		{"k8s first", env{envK8sIndex: "0"}, "auto", 3, 0, 3, ""},
		{"k8s without --shards", env{envK8sIndex: "1"}, "auto", 0, 0, 0, "give them with --shards N"},
		{"k8s index not below --shards", env{envK8sIndex: "3"}, "auto", 3, 0, 0, "is not below --shards 3"},
		{"k8s index negative", env{envK8sIndex: "-1"}, "auto", 3, 0, 0, "not a non-negative integer"},
		{"both schedulers", env{envK8sIndex: "1", envSlurmID: "1", envSlurmCount: "2"}, "auto", 2, 0, 0, "both"},
		{"neither", nil, "auto", 4, 0, 0, "neither " + envSlurmID},
		{"empty is unset", env{envK8sIndex: ""}, "auto", 4, 0, 0, "neither"},
		{"negative --shards", nil, "auto", -1, 0, 0, "--shards -1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			setShardEnv(t, c.vars)
			got, err := resolveShard(c.shard, c.shards, os.LookupEnv)
			if c.err != "" {
				if err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %+v, %v; want a usage error containing %q", got, err, c.err)
				}
				return
			}
			if err != nil || got.rank != c.rank || got.count != c.count {
				t.Fatalf("got %+v, %v; want %d/%d", got, err, c.rank, c.count)
			}
		})
	}
}

// TestEncodeShardAuto runs the binary under the variables of a Slurm job
// array (ids 1 to 3) and of a Kubernetes indexed Job (3 completions) and
// checks the blocks each task writes: together every block once, as
// --shard i/3.
func TestEncodeShardAuto(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	data := synth.Clustered(2100, 32, 20, 4)
	fv := filepath.Join(dir, "base.fvecs")
	if err := vecio.WriteFvecs(fv, data); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(dir, "idx")
	encTrained(t, data, idx, 1)

	// 7 blocks of 300: rank r of 3 does blocks r, r+3, r+6.
	want := [][]int64{{0, 3, 6}, {1, 4}, {2, 5}}
	written := func(out string) []int64 {
		var got []int64
		for b := int64(0); b < 10; b++ {
			if _, err := os.Stat(filepath.Join(out, blockName(b))); err == nil {
				got = append(got, b)
			}
		}
		return got
	}
	encode := func(out string, vars map[string]string, extra ...string) (int, string, string) {
		cmd := encCmd(bin, append([]string{"encode", "--index", idx, "--data", fv, "--out", out, "--block-size", "300", "--shard", "auto", "--quiet"}, extra...)...)
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); !slices.Contains(shardVars, k) {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		for k, v := range vars {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
			if code <= 0 {
				t.Fatal(err)
			}
		}
		return code, so.String(), se.String()
	}

	all := filepath.Join(dir, "all")
	for rank, id := range []string{"1", "2", "3"} { // sbatch --array=1-3
		out := filepath.Join(dir, "slurm"+id)
		vars := map[string]string{envSlurmID: id, envSlurmMin: "1", envSlurmMax: "3", envSlurmCount: "3", envSlurmJob: "4242"}
		code, so, se := encode(out, vars)
		if code != 0 || !strings.Contains(so, envSlurmID+"="+id) {
			t.Fatalf("slurm task %s: exit %d\n%s%s", id, code, so, se)
		}
		if got := written(out); !slices.Equal(got, want[rank]) {
			t.Fatalf("slurm task %s (rank %d) wrote blocks %v, want %v", id, rank, got, want[rank])
		}
		encode(all, vars)
	}
	if got := written(all); !slices.Equal(got, []int64{0, 1, 2, 3, 4, 5, 6}) {
		t.Fatalf("the three slurm tasks wrote blocks %v, want 0 to 6", got)
	}
	for rank := range 3 {
		out := filepath.Join(dir, "k8s"+strconv.Itoa(rank))
		code, so, se := encode(out, map[string]string{envK8sIndex: strconv.Itoa(rank)}, "--shards", "3")
		if code != 0 || !strings.Contains(so, envK8sIndex) {
			t.Fatalf("indexed job %d: exit %d\n%s%s", rank, code, so, se)
		}
		if got := written(out); !slices.Equal(got, want[rank]) {
			t.Fatalf("indexed job pod %d wrote blocks %v, want %v", rank, got, want[rank])
		}
		// The same files as --shard rank/3.
		ref := filepath.Join(dir, "ref"+strconv.Itoa(rank))
		encOK(t, bin, "encode", "--index", idx, "--data", fv, "--out", ref, "--block-size", "300", "--shard", strconv.Itoa(rank)+"/3", "--quiet")
		encSameFiles(t, out, ref)
	}

	// Missing or inconsistent variables: one line, exit 2, nothing written.
	for _, c := range []struct {
		vars  map[string]string
		extra []string
		msg   string
	}{
		{nil, nil, "neither"},
		{map[string]string{envK8sIndex: "1"}, nil, "--shards N"},
		{map[string]string{envK8sIndex: "3"}, []string{"--shards", "3"}, "not below --shards 3"},
		{map[string]string{envSlurmID: "4", envSlurmCount: "4"}, nil, "not below"},
		{map[string]string{envSlurmID: "2", envSlurmCount: "4"}, []string{"--shards", "3"}, "disagrees"},
	} {
		out := filepath.Join(dir, "refused")
		code, _, se := encode(out, c.vars, c.extra...)
		if code != 2 || strings.Count(se, "\n") != 1 || !strings.Contains(se, c.msg) {
			t.Errorf("%v %v: exit %d, stderr %q; want a usage error with %q", c.vars, c.extra, code, se, c.msg)
		}
		if got := written(out); len(got) != 0 {
			t.Errorf("%v: refused encode wrote blocks %v", c.vars, got)
		}
	}
}
