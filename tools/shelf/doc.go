// Command shelf builds, searches, merges and compacts on-disk IVF-PQ
// indexes. Run shelf --help for its commands.
//
// It imports tools only: every sub-command lives there.
package main
