#!/bin/bash
# bench/semids_fmnist.sh [OUTDIR]: semantic IDs of the 60,000 Fashion-MNIST
# training images (d = 784, pixel values 0..255 as float32), 3 levels of
# 256 codewords, with and without Sinkhorn on the last level; the tables
# are in bench/README.md ("Semantic IDs on Fashion-MNIST"). Installs
# Debian's dataset-fashion-mnist when missing (as root). The .npy and the
# trained model are kept in OUTDIR and reused.
set -euo pipefail
out=${1:-/tmp/semids}
shelf=${SHELF:-go run ./tools/shelf}
src=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -e "$src" ]; then
	apt-get install -y dataset-fashion-mnist
fi
mkdir -p "$out"
if [ ! -s "$out/fmnist.npy" ]; then
	/usr/bin/python3 - "$src" "$out/fmnist.npy" <<'PY'
import gzip, os, struct, sys
import numpy as np
with gzip.open(sys.argv[1], "rb") as f:
    magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
    assert magic == 2051, f"{sys.argv[1]}: not an idx3 image file (magic {magic:#x})"
    x = np.frombuffer(f.read(), dtype=np.uint8)
assert x.size == n * rows * cols, f"{sys.argv[1]}: {x.size} pixels, want {n}x{rows}x{cols}"
with open(sys.argv[2] + ".tmp", "wb") as f:
    np.save(f, x.reshape(n, rows * cols).astype(np.float32))
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
fi
# Train once (k-means, 100 iterations per level), then assign with each
# epsilon of the last level from the saved model.
for eps in 0,0,0.003 0,0,0 0,0,0.01 0.003,0.003,0.003; do
	echo "== --sinkhorn-eps $eps"
	$shelf semantic-ids --data "$out/fmnist.npy" --levels 256,256,256 --iters 100 --seed 1 \
		--sinkhorn-eps $eps --sinkhorn-iters 50 --model "$out/fmnist.rq" --out "$out/ids_$eps.json" --quiet
	$shelf semantic-ids --eval "$out/ids_$eps.json" | tail -n +3 | head -2
done
