package oplog_test

import (
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
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
