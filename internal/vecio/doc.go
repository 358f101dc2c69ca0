// Package vecio reads and writes the vector files that ANN benchmarks are
// distributed in: .fvecs, .ivecs and .bvecs (the TEXMEX/SIFT1M layout, one
// little-endian int32 dimension before every row) and NumPy .npy arrays
// (format versions 1.0, 2.0 and 3.0, dtypes <f4, <f8, |u1, <i4 and <i8, C order;
// float64 values are rounded to float32, and those beyond its range become
// infinities, which callers reject like any non-finite value).
//
// # What it owns
//
// The on-disk layout of those formats and their validation. Every file is
// checked against its own layout before any data is returned: a truncated
// last row, a row whose dimension differs from the first, a dimension that is
// not positive or is absurd (more than MaxDim), a bad .npy magic, header,
// dtype, shape or memory order all produce an error that names the file and
// wraps ErrFormat. Malformed input never panics; the fuzz targets hold the
// decoders to that.
//
// What vecio does not check is the values: NaN and Inf pass through, because
// whether they are acceptable depends on the caller (the index rejects them
// on insertion, a ground-truth file never contains floats).
//
// # Invariants
//
//   - A Matrix is dense and row-major: len(Data) == N*D, row i is
//     Data[i*D:(i+1)*D].
//   - Every format has a fixed row size once the header is read, so the
//     streaming Reader can seek to any row; the whole-file readers are built
//     on the same decoding code as Reader and as the fuzzed byte decoders.
//   - Writes are atomic: data goes to path+".tmp", is synced, and is renamed
//     over path, so a reader never sees a half-written file under path.
//   - An empty .fvecs/.ivecs/.bvecs file is a valid file of zero rows with
//     dimension 0.
//
// # Imports
//
// The standard library and internal/atomicfile (how files are replaced
// whole) only, so every package and command of the module may import it.
package vecio
