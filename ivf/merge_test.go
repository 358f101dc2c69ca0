package ivf

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
)

// TestMergeBlocksOnce merges a block directory in batches, interrupts it
// after the first batch, and runs it again, then once more: every vector
// goes in exactly once.
func TestMergeBlocksOnce(t *testing.T) {
	defer func(v int) { mergeMaxBlocks = v }(mergeMaxBlocks)
	mergeMaxBlocks = 2
	data := synth.Clustered(5000, 8, 10, 4)
	ix, err := NewFromFactory("IVF8,PQ4", 8, L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(data.Data, data.N, &TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := ix.ToDisk(filepath.Join(root, "idx")); err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	blocks := filepath.Join(root, "blocks")
	const size = 1000
	for b := int64(0); b < 5; b++ {
		blk := Block{Size: size, Number: b, First: b * size, Count: size}
		if err := ix.EncodeBlock(blocks, blk, data.Data[b*size*8:(b+1)*size*8]); err != nil {
			t.Fatal(err)
		}
		if err := ix.CheckBlock(blocks, blk); err != nil {
			t.Fatalf("block %d just written: %v", b, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ix.Progress = func(stage string, done, total int64) {
		if done >= 2*size {
			cancel()
		}
	}
	rep, err := ix.MergeBlocks(ctx, blocks, nil)
	ix.Progress = nil
	if !errors.Is(err, context.Canceled) || rep.Blocks != 2 || ix.NTotal() != 2*size {
		t.Fatalf("interrupted merge: %+v, ntotal %d, %v", rep, ix.NTotal(), err)
	}
	rep, err = ix.MergeBlocks(context.Background(), blocks, nil)
	if err != nil || rep.Blocks != 3 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "2 of the 5 blocks") {
		t.Fatalf("merge re-run: %+v, %v", rep, err)
	}
	rep, err = ix.MergeBlocks(context.Background(), blocks, nil)
	if err != nil || rep.Vectors != 0 || !strings.Contains(strings.Join(rep.Notes, ";"), "5 of the 5 blocks") {
		t.Fatalf("merge of a merged directory: %+v, %v", rep, err)
	}
	if n, next := ix.NTotal(), ix.NextID(); n != 5*size || next != 5*size {
		t.Fatalf("ntotal %d, next id %d; want %d", n, next, 5*size)
	}
	seen := map[int64]bool{}
	snap, _ := ix.Lists().Snapshot()
	defer snap.Release()
	if err := eachID(snap, 0, func(id int64) {
		if seen[id] {
			t.Fatalf("id %d twice", id)
		}
		seen[id] = true
	}); err != nil {
		t.Fatal(err)
	}
}
