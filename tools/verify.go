package tools

import (
	"encoding/json"
	"fmt"

	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("verify", "read every list from disk and check its codes and ids against their CRC-32C", runVerify)
}

// verifyReport is what `shelf verify --json` prints.
type verifyReport struct {
	Index   string         `json:"index"`
	Lists   int            `json:"lists"`
	Entries int64          `json:"entries"`
	Damaged []verifyDamage `json:"damaged"`
}

// verifyDamage is one damaged list: the part whose bytes [offset, end) of
// file do not match the list table's CRC-32C, or could not be read.
type verifyDamage struct {
	List      int    `json:"list"`
	Part      string `json:"part"`
	File      string `json:"file"`
	Offset    uint64 `json:"offset"`
	End       uint64 `json:"end"`
	CRCTable  string `json:"crc_table"`
	CRCRead   string `json:"crc_read,omitempty"`
	ReadError string `json:"read_error,omitempty"`
}

func runVerify(env *Env) error {
	fs := newFlags(env, "verify", "verify --index DIR [--json] [--quiet]",
		"shelf verify --index /tmp/idx\nshelf verify --index /tmp/idx --json")
	dir := fs.String("index", "", "index directory")
	asJSON := fs.Bool("json", false, "print one JSON object")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: --index is required", errUsage)
	}
	// Read-only, so a writer can keep going; the lists are read from one
	// snapshot.
	report, finish := stageBar(env, *quiet, "entries")
	ix, err := ivf.Open(*dir, &ivf.OpenOptions{ReadOnly: true, Progress: report})
	if err != nil {
		return err
	}
	defer ix.Close()
	bad, err := ix.Verify()
	finish()
	if err != nil {
		return err
	}
	rep := verifyReport{Index: *dir, Lists: ix.Params().NList, Entries: ix.NTotal(), Damaged: []verifyDamage{}}
	for _, le := range bad {
		d := verifyDamage{List: le.List, Part: le.Part, File: le.File, Offset: le.Off, End: le.End, CRCTable: fmt.Sprintf("%08x", le.Want)}
		if le.Err != nil {
			d.ReadError = le.Err.Error()
		} else {
			d.CRCRead = fmt.Sprintf("%08x", le.Got)
		}
		rep.Damaged = append(rep.Damaged, d)
	}
	if *asJSON {
		out, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, string(out))
	} else {
		for _, d := range rep.Damaged {
			if d.ReadError != "" {
				fmt.Fprintf(env.Stdout, "list %d: %s at [%d, %d) of %s unreadable: %s\n", d.List, d.Part, d.Offset, d.End, d.File, d.ReadError)
				continue
			}
			fmt.Fprintf(env.Stdout, "list %d: %s at [%d, %d) of %s: CRC-32C %s, list table %s\n", d.List, d.Part, d.Offset, d.End, d.File, d.CRCRead, d.CRCTable)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d lists damaged", len(bad), rep.Lists)
	}
	if !*asJSON {
		fmt.Fprintf(env.Stdout, "%d lists verified (%d entries)\n", rep.Lists, rep.Entries)
	}
	return nil
}
