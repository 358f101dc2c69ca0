# The project's commands. `make test` runs .ci/run, the suite CI runs.
GO ?= go
FUZZTIME ?= 10s

.PHONY: test unit race fuzz vet demo stress crash-campaign bench cuda python python-test

test:
	FUZZTIME=$(FUZZTIME) bash .ci/run

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test ./...

# The storage core, its allocator, search, the scanners and the C interface
# (its handles and tokens) under the race detector.
race:
	$(GO) test -race -short ./store/ ./slots/ ./internal/... ./ivf/ ./gpu/ ./capi/

# Brief runs of every fuzz target (every func Fuzz... of the repository)
# on top of its seed corpus, $(FUZZTIME) each, minimization bounded.
fuzz:
	FUZZTIME=$(FUZZTIME) bash .ci/fuzz

demo:
	$(GO) run ./tools/shelf demo

# The Python package's library, python/shelf/_libshelf.so (capi/), and its
# tests (Debian's /usr/bin/python3 with python3-numpy and python3-faiss).
python:
	bash python/build.sh

python-test: python
	cd python && /usr/bin/python3 -m unittest

# Long crash and model runs (not part of CI).
stress:
	$(GO) test ./store/ -run 'TestCrashKill' -store.kills=200 -timeout 30m -v
	$(GO) test ./store/ -run 'TestModel|TestCrashFaultInjection' -store.steps=30000 -timeout 30m -v

# The crash-and-fault campaign (not part of CI): the real shelf binary
# killed with SIGKILL 1,000 times across its commands, run on a full disk
# (a small tmpfs: as root, skipped otherwise) and on flipped bytes; prints
# what survived (bench/README.md).
crash-campaign:
	$(GO) run ./bench/crashcampaign --trials 1000

bench:
	$(GO) test ./store/ -run '^$$' -bench . -benchtime 2s

# The cuda build, and the GPU test binary to carry to a GPU machine
# (run there: ./bin/gpu.test -test.v -test.run GPU -test.bench 'CPUScan|GPUScan').
# Needs cuda.h and libcuda.so: a CUDA toolkit, or the SDK folder whose
# env.sh sets CGO_CFLAGS/CGO_LDFLAGS (SHELF_CUDA_DIR, default ~/.cache/shelf-cuda).
cuda:
	env=$${SHELF_CUDA_DIR:-$$HOME/.cache/shelf-cuda}/env.sh; if [ -e $$env ]; then . $$env; fi; \
	$(GO) vet -tags cuda ./gpu/ && $(GO) build -tags cuda ./... && mkdir -p bin && $(GO) test -c -tags cuda -o bin/gpu.test ./gpu/
