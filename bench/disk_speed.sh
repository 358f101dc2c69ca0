#!/usr/bin/env bash
# Sequential write speed of the disk that holds a scratch directory.
#
# Usage: bench/disk_speed.sh [DIR]
#   DIR       directory on the disk to measure (default: ${TMPDIR:-/tmp})
#   COUNT_MB  environment override of the amount written (default: 2048)
#
# Two figures, both ending with fdatasync so the time covers the data
# reaching the device rather than the page cache:
#   buffered  dd ... conv=fdatasync               (page cache, one flush at the end)
#   direct    dd ... oflag=direct conv=fdatasync  (O_DIRECT, no page cache)
# The buffered figure is the ceiling for a store that writes through the page
# cache and syncs once (FAISS's mmap'd files, followed by our fsync); the
# direct one is closer to what the device sustains for 1 MiB writes.
# The test file is removed on exit, including on error or Ctrl-C.
set -euo pipefail

dir=${1:-${TMPDIR:-/tmp}}
count_mb=${COUNT_MB:-2048}
file="$dir/ddtest.$$"

if [[ ! -d $dir ]]; then
    echo "disk_speed.sh: $dir is not a directory" >&2
    exit 2
fi

# Refuse to fill the disk: keep at least 1 GiB free beyond the test file.
avail_mb=$(df -Pm "$dir" | awk 'NR == 2 { print $4 }')
if ((avail_mb < count_mb + 1024)); then
    echo "disk_speed.sh: only ${avail_mb} MB free in $dir, need $((count_mb + 1024))" >&2
    exit 2
fi

trap 'rm -f "$file"' EXIT

# run_dd LABEL [extra dd flags...]: write count_mb MiB of zeros, print MB/s.
run_dd() {
    local label=$1
    shift
    local out
    rm -f "$file"
    # C locale so dd prints "1.23 s" (not "1,23 s") for awk to parse.
    out=$(LC_ALL=C dd if=/dev/zero of="$file" bs=1M count="$count_mb" \
        conv=fdatasync "$@" 2>&1)
    # dd's summary line: "<bytes> bytes (...) copied, <seconds> s, <rate>".
    # Compute the rate ourselves so the unit is always MB/s (1e6 bytes).
    echo "$out" | awk -v label="$label" '
        / bytes .* copied, / {
            bytes = $1
            split($0, parts, "copied, ")
            split(parts[2], t, " ")
            printf "%-8s %6d MiB in %7.3f s  %8.1f MB/s\n", label, bytes / 1048576, t[1], bytes / t[1] / 1e6
            found = 1
        }
        END { if (!found) exit 1 }' || {
        echo "disk_speed.sh: could not parse dd output:" >&2
        echo "$out" >&2
        exit 1
    }
    rm -f "$file"
}

fs=$(df -PT "$dir" | awk 'NR == 2 { print $1 " (" $2 ")" }')
echo "dir $dir on $fs"
run_dd buffered
run_dd direct oflag=direct
