package tools

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/shelfdb/shelf/internal/progress"
	"github.com/shelfdb/shelf/ivf"
)

// Env is what a sub-command runs with: its arguments and where to write.
type Env struct {
	Args   []string
	Stdout io.Writer
	Stderr io.Writer
}

type command struct {
	summary string
	run     func(env *Env) error
}

var commands = map[string]command{}

func register(name, summary string, run func(env *Env) error) {
	commands[name] = command{summary, run}
}

// errUsage marks an error caused by the command line, not the data.
var errUsage = errors.New("usage")

// Main runs the shelf command with args (without the program name) and
// returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "shelf: unknown command %q (see shelf --help)\n", args[0])
		return 2
	}
	err := c.run(&Env{Args: args[1:], Stdout: stdout, Stderr: stderr})
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "shelf %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "shelf %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "shelf: on-disk IVF-PQ inverted lists\n\nUsage: shelf <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'shelf <command> --help' for a command's flags and an example.")
}

// newFlags makes a flag set that prints usage with an example on --help
// and reports bad flags as usage errors instead of exiting.
func newFlags(env *Env, name, synopsis, example string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stdout)
	fs.Usage = func() {
		fmt.Fprintf(env.Stdout, "Usage: shelf %s\n\n", synopsis)
		fs.SetOutput(env.Stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if example != "" {
			fmt.Fprintf(env.Stdout, "\nExample:\n  %s\n", strings.ReplaceAll(example, "\n", "\n  "))
		}
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return err // the flag package has shown fs.Usage
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// bar starts a progress bar on stderr: drawn with its ETA on a terminal;
// elsewhere a plain line every 10 s for operations that last that long
// (nothing for short ones); never with quiet.
func bar(env *Env, quiet bool, label, unit string, total int64) *progress.Bar {
	mode := progress.AutoLines
	if quiet {
		mode = progress.Quiet
	}
	return progress.New(env.Stderr, mode, label, unit, total)
}

// stageBar returns a progress report that draws one bar, made on the
// first report (when the total is known), and the function that ends it.
func stageBar(env *Env, quiet bool, unit string) (report func(stage string, done, total int64), finish func()) {
	var b *progress.Bar
	report = func(stage string, done, total int64) {
		if b == nil {
			b = bar(env, quiet, stage, unit, total)
		}
		b.Set(done, 0)
	}
	return report, func() {
		if b != nil {
			b.Finish()
		}
	}
}

// checkHeadroom accepts a --headroom share in [0, 4] (what the store takes).
func checkHeadroom(h float64) error {
	if !(h >= 0 && h <= 4) {
		return fmt.Errorf("%w: --headroom %v: want a share of the list size in [0, 4]", errUsage, h)
	}
	return nil
}

// openReadOnly opens an index for a read-only command, saying on stderr
// when it reads without registering as a reader (see ivf.Unregistered).
func openReadOnly(env *Env, cmd, dir string) (*ivf.Index, error) {
	ix, err := ivf.OpenReadOnly(dir)
	if err != nil {
		return nil, err
	}
	if why := ix.Unregistered(); why != nil {
		fmt.Fprintf(env.Stderr, "shelf %s: note: reading %s without registering as a reader (%v); the writer reuses no freed space meanwhile\n", cmd, dir, why)
	}
	return ix, nil
}
