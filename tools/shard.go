package tools

import (
	"fmt"
	"strconv"
	"strings"
)

// The shard of a parallel build (`shelf encode --shard`), given on the
// command line (i/n) or taken from the scheduler that started the process
// (auto): a Slurm job array or a Kubernetes indexed Job. Every process of
// one build must get a distinct rank in [0, count) and the same count, or
// blocks are encoded twice or not at all; so a variable that is missing,
// not a number, or that disagrees with another is an error naming it,
// never a guess.

// The environment variables --shard auto reads.
const (
	envSlurmID    = "SLURM_ARRAY_TASK_ID"
	envSlurmCount = "SLURM_ARRAY_TASK_COUNT"
	envSlurmMin   = "SLURM_ARRAY_TASK_MIN"
	envSlurmMax   = "SLURM_ARRAY_TASK_MAX"
	envSlurmStep  = "SLURM_ARRAY_TASK_STEP"
	envSlurmJob   = "SLURM_JOB_ID"
	envK8sIndex   = "JOB_COMPLETION_INDEX"
)

// shardSpec is a resolved shard: this process does blocks b with
// b % count == rank. from says where it came from, for the log.
type shardSpec struct {
	rank, count int
	from        string
}

// resolveShard turns --shard (i/n or auto) and --shards (0: not given)
// into a rank and a count; lookup reads the environment (os.LookupEnv).
// Errors are usage errors: the command line or the job's description
// must change.
func resolveShard(shard string, shards int, lookup func(string) (string, bool)) (shardSpec, error) {
	if shards < 0 {
		return shardSpec{}, fmt.Errorf("%w: --shards %d: want a positive count", errUsage, shards)
	}
	if shard != "auto" {
		i, n, err := parseEncodeShard(shard)
		if err != nil {
			return shardSpec{}, err
		}
		if shards != 0 && shards != n {
			return shardSpec{}, fmt.Errorf("%w: --shards %d disagrees with --shard %s (--shards goes with --shard auto)", errUsage, shards, shard)
		}
		return shardSpec{rank: i, count: n, from: "--shard " + shard}, nil
	}
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	_, slurm := get(envSlurmID)
	_, k8s := get(envK8sIndex)
	switch {
	case slurm && k8s:
		return shardSpec{}, fmt.Errorf("%w: --shard auto: both %s (Slurm) and %s (Kubernetes) are set: give --shard i/n", errUsage, envSlurmID, envK8sIndex)
	case slurm:
		return slurmShard(get, shards)
	case k8s:
		return k8sShard(get, shards)
	}
	if job, ok := get(envSlurmJob); ok {
		return shardSpec{}, fmt.Errorf("%w: --shard auto: Slurm job %s is not a job array (%s is not set): submit it with sbatch --array=0-N, or give --shard i/n",
			errUsage, job, envSlurmID)
	}
	return shardSpec{}, fmt.Errorf("%w: --shard auto: neither %s (a Slurm job array) nor %s (a Kubernetes indexed Job) is set: give --shard i/n",
		errUsage, envSlurmID, envK8sIndex)
}

// envInt reads a non-negative integer variable.
func envInt(get func(string) (string, bool), name string) (v int, set bool, err error) {
	s, ok := get(name)
	if !ok {
		return 0, false, nil
	}
	v, err = strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, true, fmt.Errorf("%w: --shard auto: %s=%q is not a non-negative integer", errUsage, name, s)
	}
	return v, true, nil
}

// slurmShard: an array --array=MIN-MAX[:STEP] runs COUNT tasks with ids
// MIN, MIN+STEP, ..., MAX; the rank is the task's place in that sequence,
// so arrays need not start at 0. An array given as a list of ids
// (--array=1,3,7) is not such a sequence and is refused.
func slurmShard(get func(string) (string, bool), shards int) (shardSpec, error) {
	id, _, err := envInt(get, envSlurmID)
	if err != nil {
		return shardSpec{}, err
	}
	count, hasCount, err := envInt(get, envSlurmCount)
	if err != nil {
		return shardSpec{}, err
	}
	lo, hasMin, err := envInt(get, envSlurmMin)
	if err != nil {
		return shardSpec{}, err
	}
	hi, hasMax, err := envInt(get, envSlurmMax)
	if err != nil {
		return shardSpec{}, err
	}
	step, hasStep, err := envInt(get, envSlurmStep)
	if err != nil {
		return shardSpec{}, err
	}
	if !hasStep {
		step = 1
	}
	if step < 1 {
		return shardSpec{}, fmt.Errorf("%w: --shard auto: %s=%d: want a step of 1 or more", errUsage, envSlurmStep, step)
	}
	switch {
	case !hasCount && shards == 0:
		return shardSpec{}, fmt.Errorf("%w: --shard auto: %s is set but %s is not: give the number of array tasks with --shards N", errUsage, envSlurmID, envSlurmCount)
	case !hasCount:
		count = shards
	case shards != 0 && shards != count:
		return shardSpec{}, fmt.Errorf("%w: --shards %d disagrees with %s=%d", errUsage, shards, envSlurmCount, count)
	}
	if count < 1 {
		return shardSpec{}, fmt.Errorf("%w: --shard auto: %s=%d: want at least one task", errUsage, envSlurmCount, count)
	}
	from := fmt.Sprintf("%s=%d", envSlurmID, id)
	if hasMin {
		from += fmt.Sprintf(" %s=%d", envSlurmMin, lo)
	}
	if hasStep && step != 1 {
		from += fmt.Sprintf(" %s=%d", envSlurmStep, step)
	}
	if hasCount {
		from += fmt.Sprintf(" %s=%d", envSlurmCount, count)
	}
	if hasMax {
		if hi < lo || (hi-lo)%step != 0 || (hi-lo)/step+1 != count {
			return shardSpec{}, fmt.Errorf("%w: --shard auto: the array's ids %d to %d (step %d) are not its %d tasks (%s=%d, %s=%d, %s=%d): use --array=MIN-MAX[:STEP], or --shard i/n",
				errUsage, lo, hi, step, count, envSlurmMin, lo, envSlurmMax, hi, envSlurmCount, count)
		}
	}
	if id < lo || (id-lo)%step != 0 {
		return shardSpec{}, fmt.Errorf("%w: --shard auto: %s=%d is not one of the array's ids %d, %d, ... (%s=%d, step %d)",
			errUsage, envSlurmID, id, lo, lo+step, envSlurmMin, lo, step)
	}
	rank := (id - lo) / step
	if rank >= count {
		if !hasMin {
			return shardSpec{}, fmt.Errorf("%w: --shard auto: %s=%d is not below %s=%d (an array that does not start at 0 needs %s)",
				errUsage, envSlurmID, id, envSlurmCount, count, envSlurmMin)
		}
		return shardSpec{}, fmt.Errorf("%w: --shard auto: %s=%d is task %d of an array of %s=%d tasks from %s=%d",
			errUsage, envSlurmID, id, rank, envSlurmCount, count, envSlurmMin, lo)
	}
	return shardSpec{rank: rank, count: count, from: from}, nil
}

// k8sShard: an indexed Job (completionMode: Indexed) gives each pod its
// index in JOB_COMPLETION_INDEX, 0 to completions-1, but does not export
// completions: --shards says it.
func k8sShard(get func(string) (string, bool), shards int) (shardSpec, error) {
	idx, _, err := envInt(get, envK8sIndex)
	if err != nil {
		return shardSpec{}, err
	}
	if shards == 0 {
		return shardSpec{}, fmt.Errorf("%w: --shard auto: %s=%d is set, but Kubernetes does not export the Job's completions: give them with --shards N", errUsage, envK8sIndex, idx)
	}
	if idx >= shards {
		return shardSpec{}, fmt.Errorf("%w: --shard auto: %s=%d is not below --shards %d (the Job's completions)", errUsage, envK8sIndex, idx, shards)
	}
	return shardSpec{rank: idx, count: shards, from: fmt.Sprintf("%s=%d, --shards %d", envK8sIndex, idx, shards)}, nil
}
