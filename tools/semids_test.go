package tools

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
)

// semRun runs shelf semantic-ids in process and returns its exit code,
// stdout and stderr.
func semRun(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(append([]string{"semantic-ids"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func semOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := semRun(args...)
	if code != 0 {
		t.Fatalf("shelf semantic-ids %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func semReportOf(t *testing.T, out string) semReport {
	t.Helper()
	var r semReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	return r
}

func semStage1(t *testing.T, r semReport, name string) semStage {
	t.Helper()
	for _, s := range r.Stages {
		if s.Stage == name {
			return s
		}
	}
	t.Fatalf("no stage %q in %+v", name, r.Stages)
	return semStage{}
}

// semReadOut reads an IDs file with encoding/json, independently of semRead.
func semReadOut(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string][]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// The whole path on clustered data: Sinkhorn lowers the collisions of the
// nearest-codeword IDs, the written IDs are unique, --eval of the file
// reproduces the run's final figures, and a saved model assigns the same
// IDs as the run that trained it.
func TestSemanticIDs(t *testing.T) {
	const n, d = 3000, 16
	dir := t.TempDir()
	data, idsFile := filepath.Join(dir, "items.npy"), filepath.Join(dir, "ids.npy")
	if err := vecio.WriteNpyFloat32(data, synth.Clustered(n, d, 20, 7)); err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = 1_000_000 + 7*int64(i)
	}
	if err := vecio.WriteNpyInt64(idsFile, ids); err != nil {
		t.Fatal(err)
	}
	model, out := filepath.Join(dir, "m.rq"), filepath.Join(dir, "ids.json")
	args := []string{"--data", data, "--ids", idsFile, "--levels", "256,256", "--sinkhorn-eps", "0,0.003",
		"--iters", "10", "--model", model, "--out", out, "--quiet"}
	r := semReportOf(t, semOK(t, append(args, "--json")...))
	if !r.Trained || r.Items != n || r.Dim != d {
		t.Fatalf("report %+v", r)
	}
	near, sk, final := semStage1(t, r, "nearest"), semStage1(t, r, "sinkhorn"), semStage1(t, r, "final")
	t.Logf("colliding items: nearest %d, Sinkhorn %d, resolved %d (%d rounds), final %d; extra level %v",
		near.Colliding, sk.Colliding, semStage1(t, r, "resolved").Colliding, r.Rounds, final.Colliding, r.ExtraLevel)
	if near.Colliding == 0 || sk.Colliding >= near.Colliding {
		t.Errorf("Sinkhorn left %d colliding items, nearest codewords %d", sk.Colliding, near.Colliding)
	}
	if near.Levels[0] != sk.Levels[0] {
		t.Errorf("level a has epsilon 0 but changed: %+v, then %+v", near.Levels[0], sk.Levels[0])
	}
	if sk.Levels[1].EntropyBits <= near.Levels[1].EntropyBits {
		t.Errorf("Sinkhorn level b entropy %.3f bits, not above nearest's %.3f", sk.Levels[1].EntropyBits, near.Levels[1].EntropyBits)
	}
	if final.Colliding != 0 || final.CollisionRate != 0 {
		t.Fatalf("final IDs: %d colliding", final.Colliding)
	}

	// The file: every item once under its id, IDs unique, tokens lettered
	// by level.
	got := semReadOut(t, out)
	if len(got) != n {
		t.Fatalf("%s holds %d items, want %d", out, len(got), n)
	}
	seen := map[string]string{}
	for i, id := range ids {
		toks, ok := got[strconv.FormatInt(id, 10)]
		if !ok || len(toks) != r.Tokens {
			t.Fatalf("item %d: %v", id, toks)
		}
		for j, tok := range toks {
			if !strings.HasPrefix(tok, "<"+string(rune('a'+j))+"_") {
				t.Fatalf("item %d: token %d is %q", id, j, tok)
			}
		}
		k := strings.Join(toks, "")
		if other, dup := seen[k]; dup {
			t.Fatalf("items %s and %d (row %d) share ID %s", other, id, i, k)
		}
		seen[k] = strconv.FormatInt(id, 10)
	}

	// --eval of the file gives the final stage's figures, as JSON and as
	// the printed row.
	ev := semReportOf(t, semOK(t, "--eval", out, "--json"))
	fileStage := semStage1(t, ev, "file")
	fileStage.Stage = "final"
	if ev.Items != n || !reflect.DeepEqual(fileStage, final) {
		t.Errorf("--eval: %d items, %+v\nrun's final stage: %+v", ev.Items, fileStage, final)
	}
	text := semOK(t, args...)
	evText := semOK(t, "--eval", out)
	finalRow := semRowOf(t, text, "final")
	if fileRow := semRowOf(t, evText, "file"); fileRow != finalRow {
		t.Errorf("--eval printed\n%s\nthe run printed\n%s", fileRow, finalRow)
	}

	// The saved model (loaded by that second run) assigned the same IDs
	// as the run that trained it; so does a third run, and an in-memory
	// training with the same seed, on one goroutine.
	if !strings.Contains(text, "(loaded)") {
		t.Errorf("second run did not load %s:\n%s", model, text)
	}
	if again := semReadOut(t, out); !reflect.DeepEqual(again, got) {
		t.Error("the loaded model assigned other IDs than the run that trained it")
	}
	out2 := filepath.Join(dir, "ids2.json")
	semOK(t, "--data", data, "--ids", idsFile, "--levels", "256,256", "--sinkhorn-eps", "0,0.003", "--iters", "10", "--out", out2, "--threads", "1", "--quiet")
	if !reflect.DeepEqual(semReadOut(t, out2), got) {
		t.Error("training without --model on one goroutine assigned other IDs than the saved model")
	}
}

// semRowOf returns the table row of stage, without its label.
func semRowOf(t *testing.T, text, stage string) string {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, stage+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("no row %q in\n%s", stage, text)
	return ""
}

// Identical items cannot be told apart by any codeword: the extra level
// numbers them in row order, and every other item gets 0 there.
func TestSemanticIDsExtraLevel(t *testing.T) {
	const n, d = 600, 8
	dir := t.TempDir()
	x := synth.Clustered(n, d, 10, 3)
	for _, dup := range []int{5, 17, 400} { // rows 5, 17, 400 copy row 2
		copy(x.Row(dup), x.Row(2))
	}
	data, out := filepath.Join(dir, "items.npy"), filepath.Join(dir, "ids.json")
	if err := vecio.WriteNpyFloat32(data, x); err != nil {
		t.Fatal(err)
	}
	r := semReportOf(t, semOK(t, "--data", data, "--levels", "256", "--iters", "5", "--out", out, "--quiet", "--json"))
	if !r.ExtraLevel || r.Tokens != 2 || semStage1(t, r, "final").Colliding != 0 {
		t.Fatalf("report %+v", r)
	}
	got := semReadOut(t, out)
	for _, i := range []int{5, 17, 400} {
		if g, w := got[strconv.Itoa(i)][0], got["2"][0]; g != w {
			t.Errorf("row %d is a copy of row 2 but has first token %s, row 2 %s", i, g, w)
		}
	}
	// Per first token, the extra tokens count 0, 1, 2, ... in row order.
	next := map[string]int{}
	for i := range n {
		toks := got[strconv.Itoa(i)]
		if want := "<b_" + strconv.Itoa(next[toks[0]]) + ">"; len(toks) != 2 || toks[1] != want {
			t.Fatalf("row %d: %v, want extra token %s", i, toks, want)
		}
		next[toks[0]]++
	}
	if next[got["2"][0]] < 4 {
		t.Errorf("%d items have first token %s, want at least row 2 and its 3 copies", next[got["2"][0]], got["2"][0])
	}
	// No collision left: no extra level.
	uniq := filepath.Join(dir, "u.npy")
	if err := vecio.WriteNpyFloat32(uniq, synth.Clustered(300, d, 10, 4)); err != nil {
		t.Fatal(err)
	}
	r = semReportOf(t, semOK(t, "--data", uniq, "--levels", "256,256,256", "--iters", "5", "--out", out, "--quiet", "--json"))
	if semStage1(t, r, "resolved").Colliding == 0 && (r.ExtraLevel || r.Tokens != 3) {
		t.Errorf("no collisions after resolution, yet %d tokens (extra level %v)", r.Tokens, r.ExtraLevel)
	}
}

func TestSemanticIDsErrors(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	write := func(name string, m vecio.Matrix) string {
		if err := vecio.WriteNpyFloat32(p(name), m); err != nil {
			t.Fatal(err)
		}
		return p(name)
	}
	good := write("good.npy", synth.Clustered(400, 8, 10, 1))
	nan := synth.Clustered(400, 8, 10, 1)
	nan.Data[3*8+5] = float32(math.NaN())
	write("nan.npy", nan)
	write("few.npy", synth.Clustered(100, 8, 10, 1))
	write("one.npy", vecio.Matrix{N: 400, D: 1, Data: make([]float32, 400)})
	write("d16.npy", synth.Clustered(400, 16, 10, 1))
	if err := vecio.WriteNpyInt64(p("ids.npy"), make([]int64, 399)); err != nil {
		t.Fatal(err)
	}
	dupIDs := make([]int64, 400)
	for i := range dupIDs {
		dupIDs[i] = int64(i)
	}
	dupIDs[300] = 7
	if err := vecio.WriteNpyInt64(p("dup.npy"), dupIDs); err != nil {
		t.Fatal(err)
	}
	model := p("m.rq")
	semOK(t, "--data", good, "--levels", "256,256", "--iters", "3", "--model", model, "--out", p("ok.json"), "--quiet")
	if err := os.WriteFile(p("bad.rq"), []byte("SHRQ not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"array.json":   `[["<a_1>"]]`,
		"notjson.json": `{"1": ["<a_1>"`,
		"letter.json":  `{"1": ["<a_1>", "<c_2>"]}`,
		"token.json":   `{"1": ["a_1"]}`,
		"number.json":  `{"1": ["<a_x>"]}`,
		"huge.json":    `{"1": ["<a_99999999999>"]}`,
		"lengths.json": `{"1": ["<a_1>", "<b_2>"], "2": ["<a_1>"]}`,
		"dupkey.json":  `{"1": ["<a_1>"], "1": ["<a_2>"]}`,
		"empty.json":   `{}`,
		"trail.json":   `{"1": ["<a_1>"]} {}`,
		"value.json":   `{"1": "<a_1>"}`,
		"notoks.json":  `{"1": []}`,
	}
	for name, s := range files {
		if err := os.WriteFile(p(name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := p("out.json")
	for _, c := range []struct {
		code int
		msg  string
		args []string
	}{
		{2, "every level must have 256", []string{"--data", good, "--levels", "256,512", "--out", out}},
		{2, "not a number of codewords", []string{"--data", good, "--levels", "256,x", "--out", out}},
		{2, "2 values for 3 levels", []string{"--data", good, "--sinkhorn-eps", "0,0.003", "--out", out}},
		{2, "want a finite number >= 0", []string{"--data", good, "--sinkhorn-eps", "0,0,-1", "--out", out}},
		{2, "--data and --out are required", []string{"--data", good}},
		{2, "takes no --data", []string{"--eval", p("ok.json"), "--data", good}},
		{2, "--iters 0", []string{"--data", good, "--iters", "0", "--out", out}},
		{2, "--threads -1", []string{"--data", good, "--threads", "-1", "--out", out}},
		{1, "row 3, column 5 is NaN", []string{"--data", p("nan.npy"), "--out", out}},
		{1, "holds 100 items: training 256 codewords per level needs at least 256", []string{"--data", p("few.npy"), "--out", out}},
		{1, "has 1 column", []string{"--data", p("one.npy"), "--out", out}},
		{1, "holds 399 ids but", []string{"--data", good, "--ids", p("ids.npy"), "--out", out}},
		{1, "id 7 is given to rows 7 and 300", []string{"--data", good, "--ids", p("dup.npy"), "--out", out}},
		{1, "trained on dimension 8, " + p("d16.npy") + " has dimension 16", []string{"--data", p("d16.npy"), "--levels", "256,256", "--model", model, "--out", out}},
		{1, "has 2 levels, --levels gives 3", []string{"--data", good, "--model", model, "--out", out}},
		{1, "model " + p("bad.rq"), []string{"--data", good, "--model", p("bad.rq"), "--out", out}},
		{1, "holds <i8 integers, not vectors", []string{"--data", p("ids.npy"), "--out", out}},
		{1, "want a JSON object", []string{"--eval", p("array.json")}},
		{1, "bad JSON", []string{"--eval", p("notjson.json")}},
		{1, `item "1", token 2: "<c_2>" is not a token of level b`, []string{"--eval", p("letter.json")}},
		{1, `"a_1" is not a token of level a`, []string{"--eval", p("token.json")}},
		{1, `"x" is not a code number`, []string{"--eval", p("number.json")}},
		{1, `is not a code number`, []string{"--eval", p("huge.json")}},
		{1, `item "2" has 1 tokens, item "1" has 2`, []string{"--eval", p("lengths.json")}},
		{1, `item "1" appears twice`, []string{"--eval", p("dupkey.json")}},
		{1, "holds no items", []string{"--eval", p("empty.json")}},
		{1, "text after the JSON object", []string{"--eval", p("trail.json")}},
		{1, `item "1": want a list of tokens`, []string{"--eval", p("value.json")}},
		{1, `item "1" has 0 tokens`, []string{"--eval", p("notoks.json")}},
		{1, "no such file", []string{"--eval", p("missing.json")}},
	} {
		code, stdout, stderr := semRun(append(c.args, "--quiet")...)
		if code != c.code || !strings.Contains(stderr, c.msg) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want exit %d and %q", c.args, code, stderr, stdout, c.code, c.msg)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s (%v)", out, err)
	}
}

// The real binary: --help shows the example, --eval reads a file.
func TestSemanticIDsBinary(t *testing.T) {
	bin := buildShelf(t)
	help := encOK(t, bin, "semantic-ids", "--help")
	if !strings.Contains(help, "shelf semantic-ids --data items.npy") {
		t.Errorf("--help shows no example:\n%s", help)
	}
	f := filepath.Join(t.TempDir(), "ids.json")
	if err := os.WriteFile(f, []byte(`{"x": ["<a_1>", "<b_2>"], "y": ["<a_1>", "<b_2>"], "z": ["<a_3>", "<b_2>"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := encOK(t, bin, "semantic-ids", "--eval", f)
	if row := semRowOf(t, out, "file"); !strings.HasPrefix(row, "66.6667%         2  a:   2/256  0.918  b:   1/256  0.000") {
		t.Errorf("--eval row %q", row)
	}
}

// FuzzSemRead holds the IDs-file reader of --eval to errors, never a
// panic, and to consistent IDs when it accepts a file.
func FuzzSemRead(f *testing.F) {
	for _, s := range []string{
		`{"1": ["<a_1>", "<b_2>"], "2": ["<a_1>", "<b_3>"]}`,
		`{"x": ["<a_0>"]}`, `{}`, `[]`, `{"1": ["<a_1>"`, `{"1": [1]}`, `{"1": ["<a_01>"]}`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "ids.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := semRead(p)
		if err != nil {
			if !strings.HasPrefix(err.Error(), p+": ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if s.n <= 0 || s.l <= 0 || s.l > 26 || len(s.v) != s.n*s.l {
			t.Fatalf("accepted %d IDs of %d tokens with %d codes", s.n, s.l, len(s.v))
		}
		for _, c := range s.v {
			if c < 0 {
				t.Fatalf("negative code %d", c)
			}
		}
	})
}
