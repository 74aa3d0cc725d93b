package oplog_test

import (
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// BenchmarkCompressLocal compresses a push's log of 100,000 operations:
// one insert per row for 90% of the rows, an insert and updates for the
// rest.
func BenchmarkCompressLocal(b *testing.B) {
	var ops []models.Operation
	order := int64(0)
	for i := range 95000 {
		row := fmt.Sprint(i)
		order++
		ops = append(ops, models.Operation{Order: order, RowID: row, ContentTypeID: 1, Command: models.Insert})
		if i%19 == 0 {
			order++
			ops = append(ops, models.Operation{Order: order, RowID: row, ContentTypeID: 1, Command: models.Update})
		}
	}
	exists := func(int64, string) bool { return true }
	tracked := func(int64) bool { return true }
	b.ReportAllocs()
	for b.Loop() {
		keep, _ := oplog.CompressLocal(ops, exists, tracked)
		if len(keep) != 95000 {
			b.Fatalf("kept %d", len(keep))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/input-op")
}

// BenchmarkCompressRemote compresses pull chunks of 1000 operations: as a
// server sends them (one per row, ascending orders), and with a tenth of
// the rows named twice (the general path).
func BenchmarkCompressRemote(b *testing.B) {
	for _, dups := range []bool{false, true} {
		b.Run(fmt.Sprint("dups=", dups), func(b *testing.B) {
			ops := make([]protocol.Operation, 0, 1000)
			for i := range 1000 {
				row := i
				if dups && i%10 == 9 {
					row = i - 1
				}
				ops = append(ops, protocol.Operation{Order: int64(i + 1), Table: "person", RowID: fmt.Sprint(row), Command: models.Insert})
			}
			b.ReportAllocs()
			for b.Loop() {
				if out := oplog.CompressRemote(ops); len(out) == 0 {
					b.Fatal("nothing left")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/input-op")
		})
	}
}
