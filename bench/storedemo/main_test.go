package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestStoreDemo(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"--n", "50000", "--nlist", "64", "--quiet", "--dir", t.TempDir()}, &out, &errOut); err != nil {
		t.Fatalf("storedemo: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"add (batches", "merge of 4 shards", "compact", "checks passed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("storedemo output lacks %q:\n%s", want, out.String())
		}
	}
}
