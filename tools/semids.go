package tools

// shelf semantic-ids: the semantic IDs of generative recommendation (TIGER,
// LC-Rec, RQ-KMeans): an item's embedding becomes a short sequence of
// tokens <a_3> <b_141> <c_7>, one codeword index per level of a residual
// quantizer, with Sinkhorn-balanced levels and collisions resolved so that
// every item gets its own ID.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shelfdb/shelf/internal/atomicfile"
	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/rq"
)

func init() {
	register("semantic-ids", "semantic IDs of item embeddings (residual k-means, Sinkhorn-balanced, collisions resolved) and their statistics", runSemIDs)
}

// semMaxLevels is the most levels --levels takes: levels are lettered a,
// b, c, ... and the extra level that numbers colliding items takes the
// next letter, so 25 levels leave z for it.
const semMaxLevels = 25

// semDefaultResolveEps is the Sinkhorn epsilon of the collision rounds
// when the last level's own is 0 (no balancing): the literature's value.
const semDefaultResolveEps = 0.003

// semLevel is one level's use of its codebook.
type semLevel struct {
	Level       string  `json:"level"`
	Used        int     `json:"used"`        // distinct codes at this level
	Utilization float64 `json:"utilization"` // used / 256
	EntropyBits float64 `json:"entropy_bits"`
}

// semStage is the statistics of a set of IDs.
type semStage struct {
	Stage string `json:"stage"`
	// CollisionRate is the share of items whose ID another item has too.
	CollisionRate float64    `json:"collision_rate"`
	Colliding     int        `json:"colliding"`
	Levels        []semLevel `json:"levels"`
}

// semReport is what `shelf semantic-ids --json` prints as one line.
type semReport struct {
	Data          string     `json:"data,omitempty"`
	Eval          string     `json:"eval,omitempty"`
	Items         int        `json:"items"`
	Dim           int        `json:"dim,omitempty"`
	Levels        []int      `json:"levels,omitempty"`
	Eps           []float64  `json:"sinkhorn_eps,omitempty"`
	SinkhornIters int        `json:"sinkhorn_iters,omitempty"`
	Model         string     `json:"model,omitempty"`
	Trained       bool       `json:"trained"`
	TrainS        float64    `json:"train_s"`
	AssignS       float64    `json:"assign_s"`
	ResolveEps    float64    `json:"resolve_eps,omitempty"`
	Rounds        int        `json:"resolve_rounds"` // rounds that lowered the collisions
	ExtraLevel    bool       `json:"extra_level"`
	Tokens        int        `json:"tokens"` // per ID
	Out           string     `json:"out,omitempty"`
	Stages        []semStage `json:"stages"`
}

// semIDs is n IDs of l codes each, row-major.
type semIDs struct {
	n, l int
	v    []int32
}

func (s semIDs) id(i int) []int32 { return s.v[i*s.l : (i+1)*s.l] }

// key is the ID of item i as a map key.
func (s semIDs) key(i int) string {
	b := make([]byte, 4*s.l)
	for j, c := range s.id(i) {
		binary.LittleEndian.PutUint32(b[4*j:], uint32(c))
	}
	return string(b)
}

func semFromCodes(codes []byte, n, m int) semIDs {
	s := semIDs{n: n, l: m, v: make([]int32, n*m)}
	for i, c := range codes[:n*m] {
		s.v[i] = int32(c)
	}
	return s
}

// semGroups returns the groups of items that share an ID (two or more),
// in the order of their first item, each in row order.
func semGroups(s semIDs) [][]int {
	at := map[string]int{}
	var groups [][]int
	for i := range s.n {
		k := s.key(i)
		g, ok := at[k]
		if !ok {
			at[k] = len(groups)
			groups = append(groups, []int{i})
			continue
		}
		groups[g] = append(groups[g], i)
	}
	out := groups[:0]
	for _, g := range groups {
		if len(g) > 1 {
			out = append(out, g)
		}
	}
	return out
}

func semColliding(s semIDs) int {
	c := 0
	for _, g := range semGroups(s) {
		c += len(g)
	}
	return c
}

// semStats measures a set of IDs: the collision rate, and per level the
// codes used (of rq.Ksub) and the entropy of their distribution.
func semStats(stage string, s semIDs) semStage {
	st := semStage{Stage: stage, Colliding: semColliding(s)}
	if s.n > 0 {
		st.CollisionRate = float64(st.Colliding) / float64(s.n)
	}
	for j := range s.l {
		count := map[int32]int{}
		for i := range s.n {
			count[s.v[i*s.l+j]]++
		}
		// Summed in a fixed order, so that the same IDs give the same
		// bits to the last digit (--eval reproduces the run's figures).
		cs := slices.Sorted(maps.Values(count))
		var h float64
		for _, c := range cs {
			p := float64(c) / float64(s.n)
			h -= p * math.Log2(p)
		}
		st.Levels = append(st.Levels, semLevel{
			Level: string(rune('a' + j)), Used: len(count),
			Utilization: float64(len(count)) / rq.Ksub, EntropyBits: math.Abs(h),
		})
	}
	return st
}

func runSemIDs(env *Env) error {
	fs := newFlags(env, "semantic-ids", "semantic-ids --data ITEMS.npy [--ids IDS.npy] --out IDS.json [--levels 256,256,256] [--sinkhorn-eps 0,0,0.003] [--sinkhorn-iters 50] [--iters 100] [--seed 1] [--model M.rq] [--resolve-rounds 20] [--threads T] [--json] [--quiet]\n       shelf semantic-ids --eval IDS.json [--json]",
		"shelf semantic-ids --data items.npy --levels 256,256,256 --model items.rq --out ids.json       # train, save the model, assign\n"+
			"shelf semantic-ids --data new_items.npy --ids new_ids.npy --model items.rq --sinkhorn-eps 0,0,0 --out new_ids.json # assign a few new items: no balancing\n"+
			"shelf semantic-ids --eval ids.json                                                            # collision rate, utilization, entropy")
	data := fs.String("data", "", "item embeddings, one row per item (.npy of float32 or float64, .fvecs or .bvecs)")
	idsFile := fs.String("ids", "", "item ids, one per row of --data (.npy of int64 or int32, or .ivecs); default: row numbers")
	levelsFlag := fs.String("levels", "256,256,256", "codewords per level, comma-separated: one level each, and every level has 256 (8-bit codebooks)")
	epsFlag := fs.String("sinkhorn-eps", "", "Sinkhorn epsilon per level, comma-separated (0: nearest codeword; smaller balances harder); default: 0 on every level but the last, 0.003 on the last")
	skIters := fs.Int("sinkhorn-iters", 50, "Sinkhorn rounds of a balanced level")
	iters := fs.Int("iters", 100, "k-means iterations per level when training")
	seed := fs.Int64("seed", 1, "seed of k-means")
	model := fs.String("model", "", "residual quantizer file: loaded when it exists (assign only, --iters and --seed unused), else trained and saved there")
	rounds := fs.Int("resolve-rounds", 20, "rounds re-assigning the last level of colliding items with Sinkhorn (epsilon: the last level's, 0.003 if that is 0), kept while they lower the collisions; 0: none")
	out := fs.String("out", "", "IDs to write: a JSON object, item id -> list of tokens \"<a_12>\"")
	eval := fs.String("eval", "", "an IDs file to measure instead (collision rate, utilization and entropy per level)")
	threads := fs.Int("threads", 0, "goroutines of training and assignment (0: all CPUs)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	quiet := fs.Bool("quiet", false, "no progress bars")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if err := checkThreads(*threads); err != nil {
		return err
	}
	if *eval != "" {
		if *data != "" || *out != "" || *model != "" || *idsFile != "" {
			return fmt.Errorf("%w: --eval measures an existing IDs file: it takes no --data, --ids, --model or --out", errUsage)
		}
		return semEval(env, *eval, *asJSON)
	}
	if *data == "" || *out == "" {
		return fmt.Errorf("%w: --data and --out are required (or --eval FILE)", errUsage)
	}
	levels, err := semParseLevels(*levelsFlag)
	if err != nil {
		return err
	}
	m := len(levels)
	eps, err := semParseEps(*epsFlag, m)
	if err != nil {
		return err
	}
	switch {
	case *skIters < 1:
		return fmt.Errorf("%w: --sinkhorn-iters %d, want at least 1", errUsage, *skIters)
	case *iters < 1:
		return fmt.Errorf("%w: --iters %d, want at least 1", errUsage, *iters)
	case *rounds < 0:
		return fmt.Errorf("%w: --resolve-rounds %d, must not be negative", errUsage, *rounds)
	}

	x, err := vecio.ReadFloat32(*data)
	if err != nil {
		return err
	}
	n, d := x.N, x.D
	if n == 0 {
		return fmt.Errorf("%s holds no items", *data)
	}
	if d < 2 {
		return fmt.Errorf("%s has %d column: want item embeddings of shape [items, dim], dim at least 2", *data, d)
	}
	for i, v := range x.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%s: row %d, column %d is %v: embeddings must be finite", *data, i/d, i%d, v)
		}
	}
	names, err := semNames(*idsFile, *data, n)
	if err != nil {
		return err
	}

	rep := &semReport{Data: *data, Items: n, Dim: d, Levels: levels, Eps: eps, SinkhornIters: *skIters, Model: *model, Out: *out}
	q, err := semModel(env, rep, x, m, *iters, *seed, *threads, *quiet)
	if err != nil {
		return err
	}

	t0 := time.Now()
	b := bar(env, *quiet, "assign", "levels", int64(2*m))
	codes := make([]byte, n*m)
	err = q.EncodeBalanced(x.Data, n, codes, rq.BalanceOptions{Threads: *threads, Progress: func(l, _ int) { b.Set(int64(l), 0) }})
	if err != nil {
		b.Finish()
		return err
	}
	rep.Stages = append(rep.Stages, semStats("nearest", semFromCodes(codes, n, m)))
	err = q.EncodeBalanced(x.Data, n, codes, rq.BalanceOptions{Eps: eps, Iters: *skIters, Threads: *threads,
		Progress: func(l, _ int) { b.Set(int64(m+l), 0) }})
	b.Finish()
	if err != nil {
		return err
	}
	rep.Stages = append(rep.Stages, semStats("sinkhorn", semFromCodes(codes, n, m)))

	rep.ResolveEps = eps[m-1]
	if rep.ResolveEps == 0 {
		rep.ResolveEps = semDefaultResolveEps
	}
	rep.Rounds, err = semResolve(q, x.Data, codes, n, rep.ResolveEps, *skIters, *rounds, *threads)
	if err != nil {
		return err
	}
	ids := semFromCodes(codes, n, m)
	rep.Stages = append(rep.Stages, semStats("resolved", ids))
	ids, rep.ExtraLevel = semExtraLevel(ids)
	final := semStats("final", ids)
	if final.Colliding != 0 {
		panic(fmt.Sprintf("semantic-ids: %d items still share an ID after the extra level", final.Colliding))
	}
	rep.Stages = append(rep.Stages, final)
	rep.Tokens = ids.l
	rep.AssignS = time.Since(t0).Seconds()

	if err := semWrite(*out, names, ids); err != nil {
		return err
	}
	return semPrint(env.Stdout, rep, *asJSON)
}

func semParseLevels(s string) ([]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) > semMaxLevels {
		return nil, fmt.Errorf("%w: --levels has %d levels, at most %d (levels are lettered a..%c, and the extra level that separates colliding items takes the next letter)",
			errUsage, len(parts), semMaxLevels, 'a'+semMaxLevels-1)
	}
	levels := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%w: --levels %q: level %d is %q, not a number of codewords", errUsage, s, i+1, p)
		}
		if v != rq.Ksub {
			return nil, fmt.Errorf("%w: --levels %q: level %d has %d codewords, but every level must have %d (8-bit codebooks, the only kind the residual quantizer has)",
				errUsage, s, i+1, v, rq.Ksub)
		}
		levels[i] = v
	}
	return levels, nil
}

func semParseEps(s string, m int) ([]float64, error) {
	eps := make([]float64, m)
	if s == "" {
		eps[m-1] = semDefaultResolveEps
		return eps, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != m {
		return nil, fmt.Errorf("%w: --sinkhorn-eps %q has %d values for %d levels: give one per level (0 for nearest codeword)", errUsage, s, len(parts), m)
	}
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("%w: --sinkhorn-eps %q: level %d has %q, want a finite number >= 0", errUsage, s, i+1, p)
		}
		eps[i] = v
	}
	return eps, nil
}

// semNames returns the item ids as strings: those of idsFile, or the row
// numbers.
func semNames(idsFile, data string, n int) ([]string, error) {
	names := make([]string, n)
	if idsFile == "" {
		for i := range names {
			names[i] = strconv.Itoa(i)
		}
		return names, nil
	}
	ni, d, v, err := vecio.ReadInt64(idsFile)
	if err != nil {
		return nil, err
	}
	if d != 1 && ni > 0 {
		return nil, fmt.Errorf("%s has %d columns, want one id per row", idsFile, d)
	}
	if ni != n {
		return nil, fmt.Errorf("%s holds %d ids but %s holds %d items", idsFile, ni, data, n)
	}
	row := make(map[int64]int, n)
	for i, id := range v {
		if j, dup := row[id]; dup {
			return nil, fmt.Errorf("%s: id %d is given to rows %d and %d; item ids must be unique", idsFile, id, j, i)
		}
		row[id] = i
		names[i] = strconv.FormatInt(id, 10)
	}
	return names, nil
}

// semModel loads the quantizer of rep.Model when that file exists, or
// trains one on the items (and saves it when rep.Model names a path).
func semModel(env *Env, rep *semReport, x vecio.Matrix, m, iters int, seed int64, threads int, quiet bool) (*rq.RQ, error) {
	q := &rq.RQ{}
	if rep.Model != "" {
		b, err := os.ReadFile(rep.Model)
		switch {
		case err == nil:
			if err := q.UnmarshalBinary(b); err != nil {
				return nil, fmt.Errorf("model %s: %w", rep.Model, err)
			}
			if q.D != x.D {
				return nil, fmt.Errorf("model %s was trained on dimension %d, %s has dimension %d", rep.Model, q.D, rep.Data, x.D)
			}
			if q.M != m {
				return nil, fmt.Errorf("model %s has %d levels, --levels gives %d", rep.Model, q.M, m)
			}
			return q, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	if x.N < rq.Ksub {
		return nil, fmt.Errorf("%s holds %d items: training %d codewords per level needs at least %d (or assign with a trained --model)",
			rep.Data, x.N, rq.Ksub, rq.Ksub)
	}
	q, err := rq.New(x.D, m, 8)
	if err != nil {
		return nil, err
	}
	// Greedy residuals, as EncodeBalanced assigns: RQ-KMeans trains each
	// level on the residuals of the nearest codewords of the levels before.
	q.BeamSize = 1
	t0 := time.Now()
	b := bar(env, quiet, "train", "levels", int64(m))
	err = q.Train(x.Data, x.N, rq.TrainOptions{Iters: iters, Seed: seed, Threads: threads,
		Progress: func(l, _ int) { b.Set(int64(l), 0) }})
	b.Finish()
	if err != nil {
		return nil, fmt.Errorf("train on %s: %w", rep.Data, err)
	}
	rep.Trained, rep.TrainS = true, time.Since(t0).Seconds()
	if rep.Model != "" {
		mb, err := q.MarshalBinary()
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteBytes(rep.Model, mb, 0o644); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// semResolve re-assigns the last level of the items that share an ID, one
// group of items at a time, by a Sinkhorn assignment of the group to the
// codewords under its (common) prefix, as LC-Rec's collision loop does. A
// round is kept only when it lowers the number of colliding items; it
// returns the rounds kept.
func semResolve(q *rq.RQ, x []float32, codes []byte, n int, eps float64, iters, maxRounds, threads int) (int, error) {
	m, d := q.M, q.D
	epsv := make([]float64, m)
	epsv[m-1] = eps
	cur := semColliding(semFromCodes(codes, n, m))
	kept := 0
	for kept < maxRounds && cur > 0 {
		next := bytes.Clone(codes)
		for _, g := range semGroups(semFromCodes(codes, n, m)) {
			xg := make([]float32, len(g)*d)
			cg := make([]byte, len(g)*m)
			for j, i := range g {
				copy(xg[j*d:], x[i*d:(i+1)*d])
				copy(cg[j*m:], codes[i*m:(i+1)*m])
			}
			err := q.EncodeBalanced(xg, len(g), cg, rq.BalanceOptions{Eps: epsv, Iters: iters, From: m - 1, Threads: threads})
			if err != nil {
				return kept, err
			}
			for j, i := range g {
				next[i*m+m-1] = cg[j*m+m-1]
			}
		}
		c := semColliding(semFromCodes(next, n, m))
		if c >= cur {
			break
		}
		copy(codes, next)
		cur = c
		kept++
	}
	return kept, nil
}

// semExtraLevel appends, when some items still share an ID, one more
// level that numbers the items of each ID in row order (0, 1, 2, ...), to
// every item, as TIGER does (0 for an item whose ID is unique), so that
// all IDs have the same length. It reports whether it added the level.
func semExtraLevel(s semIDs) (semIDs, bool) {
	if semColliding(s) == 0 {
		return s, false
	}
	out := semIDs{n: s.n, l: s.l + 1, v: make([]int32, s.n*(s.l+1))}
	seen := map[string]int32{}
	for i := range s.n {
		k := s.key(i)
		id := out.id(i)
		copy(id, s.id(i))
		id[s.l] = seen[k]
		seen[k]++
	}
	return out, true
}

func semToken(level int, code int32) string {
	return "<" + string(rune('a'+level)) + "_" + strconv.Itoa(int(code)) + ">"
}

// semWrite writes the IDs as a JSON object, item id -> list of tokens, one
// item a line in row order, atomically.
func semWrite(path string, names []string, s semIDs) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		io.WriteString(w, "{")
		for i, name := range names {
			if i > 0 {
				io.WriteString(w, ",")
			}
			key, _ := json.Marshal(name)
			fmt.Fprintf(w, "\n%s: [", key)
			for j, c := range s.id(i) {
				if j > 0 {
					io.WriteString(w, ", ")
				}
				fmt.Fprintf(w, "%q", semToken(j, c))
			}
			io.WriteString(w, "]")
		}
		_, err := io.WriteString(w, "\n}\n")
		return err
	})
}

// semEval measures an IDs file: any JSON object of item id -> list of
// tokens "<letter_number>", the letters a, b, c, ... by position.
func semEval(env *Env, path string, asJSON bool) error {
	ids, err := semRead(path)
	if err != nil {
		return err
	}
	rep := &semReport{Eval: path, Items: ids.n, Tokens: ids.l, Stages: []semStage{semStats("file", ids)}}
	return semPrint(env.Stdout, rep, asJSON)
}

func semRead(path string) (semIDs, error) {
	f, err := os.Open(path)
	if err != nil {
		return semIDs{}, err
	}
	defer f.Close()
	bad := func(format string, args ...any) (semIDs, error) {
		return semIDs{}, fmt.Errorf("%s: "+format, append([]any{path}, args...)...)
	}
	dec := json.NewDecoder(bufio.NewReader(f))
	tok, err := dec.Token()
	if err != nil {
		return bad("not JSON: %v", err)
	}
	if tok != json.Delim('{') {
		return bad("want a JSON object of item id -> list of tokens like \"<a_12>\", found %v", tok)
	}
	s := semIDs{l: -1}
	seen := map[string]bool{}
	var first string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad("bad JSON at byte %d: %v", dec.InputOffset(), err)
		}
		name := tok.(string) // object keys are strings
		if seen[name] {
			return bad("item %q appears twice", name)
		}
		seen[name] = true
		var toks []string
		if err := dec.Decode(&toks); err != nil {
			var syn *json.SyntaxError
			if errors.As(err, &syn) || errors.Is(err, io.ErrUnexpectedEOF) {
				return bad("bad JSON at byte %d (item %q): %v", dec.InputOffset(), name, err)
			}
			return bad("item %q: want a list of tokens like \"<a_12>\": %v", name, err)
		}
		if s.l < 0 {
			if len(toks) == 0 || len(toks) > 26 {
				return bad("item %q has %d tokens, want 1 to 26", name, len(toks))
			}
			s.l, first = len(toks), name
		}
		if len(toks) != s.l {
			return bad("item %q has %d tokens, item %q has %d: IDs must have one token per level", name, len(toks), first, s.l)
		}
		for j, t := range toks {
			c, err := semParseToken(t, j)
			if err != nil {
				return bad("item %q, token %d: %v", name, j+1, err)
			}
			s.v = append(s.v, c)
		}
		s.n++
	}
	if _, err := dec.Token(); err != nil {
		return bad("bad JSON at byte %d: %v", dec.InputOffset(), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("text after the JSON object at byte %d", dec.InputOffset())
	}
	if s.n == 0 {
		return bad("holds no items")
	}
	return s, nil
}

// semParseToken parses "<c_12>" at position level (letter 'a'+level).
func semParseToken(t string, level int) (int32, error) {
	want := string(rune('a' + level))
	inner, ok := strings.CutPrefix(t, "<"+want+"_")
	if ok {
		inner, ok = strings.CutSuffix(inner, ">")
	}
	if !ok {
		return 0, fmt.Errorf("%q is not a token of level %s (want \"<%s_N>\")", t, want, want)
	}
	v, err := strconv.ParseUint(inner, 10, 31)
	if err != nil || (len(inner) > 1 && inner[0] == '0') {
		return 0, fmt.Errorf("%q: %q is not a code number (want 0 to %d)", t, inner, math.MaxInt32)
	}
	return int32(v), nil
}

func semPrint(w io.Writer, rep *semReport, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	if rep.Eval != "" {
		fmt.Fprintf(w, "%s: %d items, IDs of %d tokens\n\n", rep.Eval, rep.Items, rep.Tokens)
	} else {
		fmt.Fprintf(w, "semantic IDs of %d items of dimension %d (%s): %d levels of %d codewords\n", rep.Items, rep.Dim, rep.Data, len(rep.Levels), rq.Ksub)
		switch {
		case rep.Trained && rep.Model != "":
			fmt.Fprintf(w, "model      trained in %.1f s, saved to %s\n", rep.TrainS, rep.Model)
		case rep.Trained:
			fmt.Fprintf(w, "model      trained in %.1f s (not saved: no --model)\n", rep.TrainS)
		default:
			fmt.Fprintf(w, "model      %s (loaded)\n", rep.Model)
		}
		eps := make([]string, len(rep.Eps))
		for i, e := range rep.Eps {
			eps[i] = strconv.FormatFloat(e, 'g', -1, 64)
		}
		fmt.Fprintf(w, "assigned   in %.1f s: Sinkhorn eps %s, %d iterations; %d collision round(s) kept (eps %g)\n",
			rep.AssignS, strings.Join(eps, ","), rep.SinkhornIters, rep.Rounds, rep.ResolveEps)
		if rep.ExtraLevel {
			fmt.Fprintf(w, "extra      level %c numbers the items that share an ID, on every item (0 where the ID is unique)\n", 'a'+len(rep.Levels))
		}
		fmt.Fprintf(w, "wrote      %s: %d IDs of %d tokens\n\n", rep.Out, rep.Items, rep.Tokens)
	}
	levels := 0
	for _, st := range rep.Stages {
		levels = max(levels, len(st.Levels))
	}
	fmt.Fprintf(w, "%-9s %10s %9s", "stage", "collisions", "items")
	for j := range levels {
		fmt.Fprintf(w, "  %c: %7s %6s", 'a'+j, "used", "bits")
	}
	fmt.Fprintln(w)
	for _, st := range rep.Stages {
		fmt.Fprintln(w, semRow(st))
	}
	fmt.Fprintf(w, "\ncollisions: share of items whose ID another item has; used: distinct codes of the level / %d (utilization); bits: entropy of the level's codes (at most %.0f)\n",
		rq.Ksub, math.Log2(rq.Ksub))
	return nil
}

// semRow is a stage's line of the table.
func semRow(st semStage) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-9s %9.4f%% %9d", st.Stage, 100*st.CollisionRate, st.Colliding)
	for _, l := range st.Levels {
		fmt.Fprintf(&sb, "  %s: %7s %6.3f", l.Level, fmt.Sprintf("%d/%d", l.Used, rq.Ksub), l.EntropyBits)
	}
	return sb.String()
}
