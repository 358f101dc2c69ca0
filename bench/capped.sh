#!/usr/bin/env bash
# Runs a command under a real memory cap: a fresh cgroup v1 memory group
# whose limit counts the page cache the command causes as well as its own
# memory (a process over it is reclaimed from, then OOM-killed). Prints,
# on stderr, the group's peak, how often it reached the limit (failcnt:
# the kernel had to reclaim to stay under it) and OOM kills, then removes
# the group. Exit status: the command's.
#
#   bench/capped.sh LIMIT [--cold] -- CMD [ARGS...]
#
# LIMIT: bytes, or with a unit (512M, 1G, 4GiB). --cold drops the page
# cache first (echo 3 > /proc/sys/vm/drop_caches), so the command reads
# from disk. Needs root and cgroup v1's memory controller
# (/sys/fs/cgroup/memory). CAPPED_REPORT=FILE also writes the figures
# there as one JSON object.
set -uo pipefail
if [ $# -lt 3 ]; then
  echo "usage: bench/capped.sh LIMIT [--cold] -- CMD [ARGS...]" >&2; exit 2
fi
limit=$1; shift
cold=0
if [ "$1" = --cold ]; then cold=1; shift; fi
[ "$1" = -- ] && shift
root=/sys/fs/cgroup/memory
if [ ! -w "$root" ]; then
  echo "capped: $root is not writable: cgroup v1 memory controller and root needed" >&2; exit 2
fi
bytes=$(numfmt --from=iec "$(echo "$limit" | sed -E 's/(i?B)$//I' | tr a-z A-Z)") || { echo "capped: bad LIMIT $limit" >&2; exit 2; }
g=$root/shelf-capped-$$-$RANDOM
mkdir "$g" || exit 2
cleanup() {
  # Whatever is left in the group goes back to the root group first.
  if [ -d "$g" ]; then
    for p in $(cat "$g/cgroup.procs" 2>/dev/null); do echo "$p" > "$root/cgroup.procs" 2>/dev/null; done
    rmdir "$g" 2>/dev/null
  fi
}
trap cleanup EXIT
echo "$bytes" > "$g/memory.limit_in_bytes"
echo 0 > "$g/memory.swappiness" 2>/dev/null || true
if [ "$cold" = 1 ]; then
  sync; echo 3 > /proc/sys/vm/drop_caches
fi
bash -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' capped "$g" "$@"
rc=$?
peak=$(cat "$g/memory.max_usage_in_bytes")
failcnt=$(cat "$g/memory.failcnt")
ooms=$(awk '/^oom_kill /{print $2}' "$g/memory.oom_control" 2>/dev/null)
ooms=${ooms:-0}
hit=no
[ "$failcnt" -gt 0 ] && hit=yes
awk -v l="$limit" -v b="$bytes" -v p="$peak" -v h="$hit" -v f="$failcnt" -v o="$ooms" -v rc="$rc" 'BEGIN {
  printf "capped: limit %s (%d B), peak %d B (%.1f MiB, %.0f%% of the limit), reached the limit: %s (failcnt %d), OOM kills %d, exit %d\n", l, b, p, p/1048576, 100*p/b, h, f, o, rc }' >&2
if [ -n "${CAPPED_REPORT:-}" ]; then
  printf '{"limit":%d,"peak":%d,"failcnt":%d,"oom_kills":%d,"exit":%d}\n' "$bytes" "$peak" "$failcnt" "$ooms" "$rc" > "$CAPPED_REPORT"
fi
exit $rc
