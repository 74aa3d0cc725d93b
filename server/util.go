package server

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
)

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// checkPushID refuses a push id that is not a UUID in canonical form
// (lowercase, hyphenated, as uuid.NewString writes it): exactly-once is
// kept per push id string, so one UUID must have one spelling.
func checkPushID(id string) error {
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		return fmt.Errorf("%w: push_id %q is not a UUID in canonical form (lowercase, hyphenated)", dbsync.ErrBadRequest, id)
	}
	return nil
}
