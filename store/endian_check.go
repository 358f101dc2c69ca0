//go:build !(386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm)

package store

// The data file stores ids as little-endian int64 and views them in place
// (see int64View), so the store refuses to build on big-endian machines.
var _ = storeRequiresLittleEndian
