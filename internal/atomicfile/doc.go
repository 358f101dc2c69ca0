// Package atomicfile writes a file so that its name holds either the old
// content or the complete new content, never a part of it, even across a
// crash of the process or of the machine.
//
// # What it owns
//
// The one way the project replaces a whole file: write it completely under
// a temporary name beside it (TempName: the path with ".tmp" appended),
// fsync it, rename it over the final name, then fsync the directory so the
// rename is durable too. A write that fails at any step, or is aborted,
// removes the temporary and leaves the final name as it was.
//
// # Invariants
//
//   - The final name never names a partly written file: readers that open
//     it see the old file whole or the new file whole, and a reader that
//     opened the old file keeps reading it whole after the replacement.
//   - After a successful durable write (the default), the new content and
//     its name survive a machine crash. A write with NoSync is atomic for
//     other processes only; after a machine crash the name may hold the old
//     content, the new one, or an empty or partial file, so it suits only
//     files whose readers check them (a checksum) and can do without them.
//   - One writer at a time per path: the temporary's name is fixed, so
//     that a temporary left by a crash is replaced by the next write rather
//     than piling up. The owner of a file serializes its writes.
//
// # Imports
//
// The standard library only: nothing of this project.
package atomicfile
