package synctest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// InsertNotes inserts n new notes into db, each with a body of about size
// bytes, 500 to a statement: bulk rows for the tests of large transfers.
func InsertNotes(t testing.TB, db bun.IDB, n, size int) {
	t.Helper()
	body := strings.Repeat("n", size)
	created := time.Now().UTC().Truncate(time.Microsecond)
	for done := 0; done < n; done += 500 {
		notes := make([]*testmodels.Note, min(500, n-done))
		for i := range notes {
			notes[i] = &testmodels.Note{ID: uuid.New(), Body: fmt.Sprint(done+i, body), Created: created}
		}
		if _, err := db.NewInsert().Model(&notes).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
