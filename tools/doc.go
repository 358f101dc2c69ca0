// Package tools holds the sub-commands of the shelf command as a library:
// each sub-command is one file with its flags, help text and test, and
// tools/shelf is a thin main around Main. Errors reach the user as one line
// on stderr and exit code 1; --help shows an example.
package tools
