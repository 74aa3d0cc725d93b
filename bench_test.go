package dbsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// Benchmarks of the hot functions of the sync path. The end-to-end figures
// against the raw database are produced by cmd/dbsync-bench.

func benchRegistry(b *testing.B) (*dbsync.Registry, *dbsync.Table) {
	b.Helper()
	reg, err := dbsync.Track(dbtest.SQLite(b), testmodels.All()...)
	if err != nil {
		b.Fatal(err)
	}
	return reg, reg.Table("notes")
}

func sampleNote() *testmodels.Note {
	score := 4.5
	return &testmodels.Note{
		ID: uuid.New(), Body: "a note with \"quotes\" and unicode é", Created: time.Now(),
		Data: []byte{0, 1, 2, 3, 250}, Score: &score, Count: 42, Meta: json.RawMessage(`{"k":[1,2]}`),
	}
}

func BenchmarkAppendRow(b *testing.B) {
	_, t := benchRegistry(b)
	v := reflect.ValueOf(sampleNote()).Elem()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = t.Codec().AppendRow(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeRaw(b *testing.B) {
	_, t := benchRegistry(b)
	raw, err := t.Codec().AppendRow(nil, reflect.ValueOf(sampleNote()).Elem())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Codec().DecodeRaw(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseMessage(b *testing.B) {
	reg, t := benchRegistry(b)
	_ = reg
	msg := &protocol.Message{Type: protocol.MsgChunk, Payload: protocol.Payload{}}
	for i := range 1000 {
		raw, err := t.Codec().AppendRow(nil, reflect.ValueOf(sampleNote()).Elem())
		if err != nil {
			b.Fatal(err)
		}
		msg.Payload["notes"] = append(msg.Payload["notes"], raw)
		msg.Operations = append(msg.Operations, protocol.Operation{Order: int64(i), Table: "notes", RowID: fmt.Sprint(i), Command: models.Insert})
	}
	line, err := protocol.AppendMessage(nil, msg)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.ParseMessage(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompressLocal(b *testing.B) {
	ops := make([]models.Operation, 0, 10000)
	for i := range 10000 {
		cmd := []models.Command{models.Insert, models.Update, models.Update, models.Delete}[i%4]
		ops = append(ops, models.Operation{Order: int64(i), RowID: fmt.Sprint(i / 3), ContentTypeID: 1, Command: cmd})
	}
	yes := func(int64, string) bool { return true }
	tracked := func(int64) bool { return true }
	b.ReportAllocs()
	for b.Loop() {
		oplog.CompressLocal(ops, yes, tracked)
	}
}

// BenchmarkMergeChunk merges a chunk of 1000 remote inserts into a node
// with 100 pending changes (no conflicts: the common case).
func BenchmarkMergeChunk(b *testing.B) {
	reg, _ := benchRegistry(b)
	lists := reg.Table("lists")
	var ops []protocol.Operation
	payload := map[string]map[string]protocol.Row{"lists": {}}
	for i := range 1000 {
		key := fmt.Sprint(1000 + i)
		ops = append(ops, protocol.Operation{Order: int64(i), Table: "lists", RowID: key, Command: models.Insert})
		row, err := lists.Codec().EncodeRow(&testmodels.List{ID: int64(1000 + i), Name: "l" + key})
		if err != nil {
			b.Fatal(err)
		}
		payload["lists"][key] = row
	}
	var local []merge.LocalOp
	for i := range 100 {
		local = append(local, merge.LocalOp{Obj: merge.Obj{Table: "todos", Key: fmt.Sprint(i)}, Command: models.Update, Orders: []int64{int64(i)}})
	}
	b.ReportAllocs()
	for b.Loop() {
		m := merge.NewMerger(reg, merge.NewLocal(local, nil), noLookup{}, nil)
		if _, err := m.Chunk(ops, payload); err != nil {
			b.Fatal(err)
		}
	}
}

type noLookup struct{}

func (noLookup) Rows(string, []string) (map[string]protocol.Row, error) { return nil, nil }
func (noLookup) UniqueHolders(string, []string, []protocol.Row) (map[int]string, error) {
	return nil, nil
}

// BenchmarkPushPull pushes 1000 inserts from one node and pulls them into
// another, over loopback HTTP, per iteration.
func BenchmarkPushPull(b *testing.B) {
	for _, kind := range dbtest.Kinds {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			srv := synctest.NewServer(b, kind, nil)
			a := synctest.NewClient(b, srv, "a", nil)
			c := synctest.NewClient(b, srv, "b", nil)
			list := &testmodels.List{Name: "bench"}
			if _, err := a.DB.NewInsert().Model(list).Exec(ctx); err != nil {
				b.Fatal(err)
			}
			n := 0
			for b.Loop() {
				todos := make([]testmodels.Todo, 1000)
				for i := range todos {
					todos[i] = testmodels.Todo{ListID: list.ID, Title: fmt.Sprint("t", n)}
					n++
				}
				if _, err := a.DB.NewInsert().Model(&todos).Exec(ctx); err != nil {
					b.Fatal(err)
				}
				if _, err := a.Sync(ctx); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Pull(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
