// Command shelf builds, searches, merges and compacts on-disk IVF-PQ
// indexes. Run shelf --help for its commands.
package main

import (
	"os"

	"github.com/shelfdb/shelf/tools"
)

func main() { os.Exit(tools.Main(os.Args[1:], os.Stdout, os.Stderr)) }
