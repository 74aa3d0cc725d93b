package synctest

import (
	"slices"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// OlderSchemas returns, in text form (protocol.NodeSchema.String), the 65
// schemas an older release of the test models (testmodels.All) could
// have, each one a server tracking reg (those models) serves with a view
// (server.Server.ForSchema): notes without some of its optional columns
// (32 ways) or without notes, todos with or without done; reg's own
// schema is left out.
func OlderSchemas(reg *dbsync.Registry) []string {
	own := reg.NodeSchema()
	optional := []string{"data", "score", "tag", "count", "meta"}
	var schemas []string
	for notes := 0; notes <= 32; notes++ {
		for _, done := range []bool{true, false} {
			s := reg.NodeSchema()
			s.Tables = slices.DeleteFunc(s.Tables, func(tb protocol.SchemaTable) bool { return tb.Name == "notes" && notes == 32 })
			for i := range s.Tables {
				tb := &s.Tables[i]
				tb.Columns = slices.DeleteFunc(slices.Clone(tb.Columns), func(c protocol.SchemaColumn) bool {
					if tb.Name == "todos" {
						return c.Name == "done" && !done
					}
					j := slices.Index(optional, c.Name)
					return tb.Name == "notes" && j >= 0 && notes&(1<<j) != 0
				})
			}
			if s.String() != own.String() {
				schemas = append(schemas, s.String())
			}
		}
	}
	return schemas
}
