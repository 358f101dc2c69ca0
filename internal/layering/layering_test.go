package layering

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/shelfdb/shelf/"

// allowed lists, for each package of the module, the packages of the
// module it may import (tests included); a trailing "/" allows a whole
// tree. Every package must be listed, so a new one gets its rule.
var allowed = map[string][]string{
	"slots":                []string{},
	"store":                {"slots", "internal/"},
	"kmeans":               {"internal/vecmath", "internal/synth"},
	"pq":                   {"kmeans", "internal/"},
	"rq":                   {"kmeans", "internal/"},
	"ivf":                  {"pq", "rq", "kmeans", "store", "internal/"},
	"faissio":              {"ivf", "pq", "rq", "internal/"},
	"gpu":                  {"ivf", "slots", "internal/"},
	"tools":                {"ivf", "faissio", "gpu", "pq", "rq", "internal/"},
	"tools/shelf":          {"tools"},
	"capi":                 {"ivf", "faissio", "internal/"},
	"internal/vecmath":     {},
	"internal/vecio":       {"internal/atomicfile"},
	"internal/atomicfile":  {},
	"internal/progress":    {},
	"internal/plot":        {"internal/atomicfile"},
	"internal/synth":       {"internal/vecio", "internal/vecmath"},
	"internal/groundtruth": {"internal/vecio", "internal/vecmath", "internal/synth"},
	"internal/faisstest":   {},
	"internal/layering":    {},
	"bench/bigsearch":      {""},
	"bench/crashcampaign":  {""},
	"bench/ivfbench":       {""},
	"bench/listbalance":    {""},
	"bench/scale":          {""},
	"bench/rqbench":        {""},
	"bench/storedemo":      {""},
}

type pkg struct {
	ImportPath, Dir, Name              string
	Imports, TestImports, XTestImports []string
	GoFiles                            []string
}

func TestLayering(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"...")
	cmd.Dir = "../.."
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		seen++
		name := strings.TrimPrefix(p.ImportPath, module)
		rules, ok := allowed[name]
		if !ok {
			t.Errorf("package %s has no import rule: add it to the table here and to the README's package table", name)
			continue
		}
		for _, imp := range append(append(p.Imports, p.TestImports...), p.XTestImports...) {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if dep == name {
				continue // an external test package
			}
			ok := false
			for _, r := range rules {
				if dep == r || (strings.HasSuffix(r, "/") && strings.HasPrefix(dep, r)) || r == "" {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s, which it must not (allowed: %v)", name, dep, rules)
			}
		}
		doc := filepath.Join(p.Dir, "doc.go")
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Errorf("%s has no doc.go saying what it owns and what it must not import", name)
			continue
		}
		if !strings.Contains(strings.ToLower(string(b)), "import") {
			t.Errorf("%s: doc.go does not say what the package may or must not import", doc)
		}
	}
	if seen < len(allowed)-2 {
		t.Fatalf("go list saw %d packages, the table has %d", seen, len(allowed))
	}
}
