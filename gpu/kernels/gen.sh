#!/bin/sh
# Regenerates scan.ptx from scan.cu. compute_80 PTX is JIT-compiled by the
# driver for any newer GPU (H100/H200: sm_90) when the module is loaded.
# Needs nvcc (source the env.sh of the CUDA SDK); the output is
# deterministic and committed, so users and CI need no nvcc.
set -e
cd "$(dirname "$0")"
nvcc -ptx -arch=compute_80 -O3 -o scan.ptx scan.cu
