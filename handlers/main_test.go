package handlers_test

import (
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestMain lets the PostgreSQL schemas of the test databases be reused
// from test to test (dbtest.Main).
func TestMain(m *testing.M) { dbtest.Main(m) }
