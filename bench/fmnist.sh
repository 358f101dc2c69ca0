#!/bin/bash
# bench/fmnist.sh [OUTDIR]: Fashion-MNIST as float32 .fvecs (pixel values
# 0..255, d = 784): OUTDIR/fmnist_base.fvecs (60,000 training images) and
# OUTDIR/fmnist_query.fvecs (10,000 test images), plus the exact L2
# ground truth OUTDIR/fmnist_gt.ivecs (100 neighbours, shelf groundtruth).
# Installs Debian's dataset-fashion-mnist when missing (as root). Files
# already there are kept.
set -euo pipefail
out=${1:-/tmp/fmnist}
src=/usr/share/datasets/fashion-mnist
if [ ! -e "$src/train-images-idx3-ubyte.gz" ]; then
	apt-get install -y dataset-fashion-mnist
fi
mkdir -p "$out"
conv() { # idx3 ubyte gz -> fvecs
	[ -s "$2" ] && return
	/usr/bin/python3 - "$1" "$2" <<'PY'
import gzip, struct, sys
import numpy as np
with gzip.open(sys.argv[1], "rb") as f:
    magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
    assert magic == 2051, f"{sys.argv[1]}: not an idx3 image file (magic {magic:#x})"
    x = np.frombuffer(f.read(), dtype=np.uint8)
assert x.size == n * rows * cols, f"{sys.argv[1]}: {x.size} pixels, want {n}x{rows}x{cols}"
d = rows * cols
rec = np.empty((n, d + 1), dtype=np.float32)
rec[:, 1:] = x.reshape(n, d)
rec.view(np.int32)[:, 0] = d
rec.tofile(sys.argv[2] + ".tmp")
PY
	mv "$2.tmp" "$2"
}
conv "$src/train-images-idx3-ubyte.gz" "$out/fmnist_base.fvecs"
conv "$src/t10k-images-idx3-ubyte.gz" "$out/fmnist_query.fvecs"
if [ ! -s "$out/fmnist_gt.ivecs" ]; then
	${SHELF:-go run ./tools/shelf} groundtruth --data "$out/fmnist_base.fvecs" --queries "$out/fmnist_query.fvecs" --k 100 --out "$out/fmnist_gt.ivecs"
fi
ls -l "$out"
