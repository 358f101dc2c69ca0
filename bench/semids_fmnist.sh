#!/bin/bash
# bench/semids_fmnist.sh [OUTDIR]: semantic IDs of the 60,000 Fashion-MNIST
# training images (d = 784, pixel values 0..255 as float32, from
# bench/fmnist.sh), 3 levels of 256 codewords, with and without Sinkhorn;
# the tables are in bench/README.md ("Semantic IDs on Fashion-MNIST"). The
# data and the trained model are kept in OUTDIR and reused.
set -euo pipefail
out=${1:-/tmp/semids}
shelf=${SHELF:-go run ./tools/shelf}
bash bench/fmnist.sh "$out" # Fashion-MNIST as .fvecs (installs the Debian package if needed)
data=$out/fmnist_base.fvecs
# Train once (k-means, 100 iterations per level), then assign with each
# epsilon of the last level from the saved model.
for eps in 0,0,0.003 0,0,0 0,0,0.01 0.003,0.003,0.003; do
	echo "== --sinkhorn-eps $eps"
	$shelf semantic-ids --data "$data" --levels 256,256,256 --iters 100 --seed 1 \
		--sinkhorn-eps $eps --sinkhorn-iters 50 --model "$out/fmnist.rq" --out "$out/ids_$eps.json" --quiet
	$shelf semantic-ids --eval "$out/ids_$eps.json" | tail -n +3 | head -2
done
