package tools

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// Sizes from the command line are checked here, before anything is
// allocated from them: a bad one is a usage error naming the flag, never
// a panic or an allocation the machine cannot make.

// checkK accepts a --k of 1 to vecmath.MaxResults and, once the queries
// are known (nq > 0), nq*k results at most.
func checkK(k, nq int, queries string) error {
	if k < 1 || k > vecmath.MaxResults {
		return fmt.Errorf("%w: --k %d: want 1 to %d", errUsage, k, vecmath.MaxResults)
	}
	if _, ok := vecmath.ResultCount(nq, k); !ok {
		return fmt.Errorf("%w: --k %d for the %d queries of %s is more than the %d results one run returns: split the queries",
			errUsage, k, nq, queries, vecmath.MaxResults)
	}
	return nil
}

// checkThreads accepts a --threads of 0 (all CPUs) to vecmath.MaxThreads.
func checkThreads(threads int) error {
	if threads < 0 || threads > vecmath.MaxThreads {
		return fmt.Errorf("%w: --threads %d: want 0 (all CPUs) to %d", errUsage, threads, vecmath.MaxThreads)
	}
	return nil
}

// machineMemory returns the memory this process may use: the machine's
// (MemTotal) or its cgroup's limit if lower; 0 when unknown.
func machineMemory() uint64 {
	var mem uint64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err == nil {
					mem = kb << 10
				}
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if lim, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && (mem == 0 || lim < mem) {
			mem = lim
		}
	}
	return mem
}

// gib formats a byte count in GiB.
func gib(b float64) string { return fmt.Sprintf("%.1f GiB", b/(1<<30)) }

// maxIODepth bounds --io-depth: past a few hundred reads in flight no
// disk reads faster.
const maxIODepth = 1024

// parseBytes reads a size: a number of bytes, or one with a unit
// (K, M, G, T: powers of 1024, also written KiB, KB, k...).
func parseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = strings.TrimSpace(t[:n-1])
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || !(f > 0 && f*float64(mult) < 1<<62) {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, or one with a unit (512M, 1GiB, 2.5G)", s)
	}
	return int64(f * float64(mult)), nil
}
