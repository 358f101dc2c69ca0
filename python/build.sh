#!/usr/bin/env bash
# Builds the library of the Python package, python/shelf/_libshelf.so, from
# the Go package capi/ (Go 1.26 and a C compiler). Then, from python/:
#   /usr/bin/python3 -m unittest            # the tests
#   PYTHONPATH=python python3 -c 'import shelf'   # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
go build -buildmode=c-shared -ldflags='-s -w' -o python/shelf/_libshelf.so ./capi
rm -f python/shelf/_libshelf.h # the generated C header; python/shelf uses ctypes
echo "built python/shelf/_libshelf.so"
