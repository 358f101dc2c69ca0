// Package tools holds the sub-commands of the shelf command as a library:
// each sub-command is one file with its flags, help text and test, and
// tools/shelf is a thin main around Main. Errors reach the user as one line
// on stderr and exit code 1; --help shows an example.
//
// # Imports
//
// The commands work through ivf (an index directory belongs to it), the
// FAISS file package, gpu and the internal helpers; they never import
// store/ or slots/, and never open an index's files themselves
// (internal/layering checks it).
package tools
