package main

import (
	"os"

	"github.com/shelfdb/shelf/tools"
)

func main() { os.Exit(tools.Main(os.Args[1:], os.Stdout, os.Stderr)) }
