package server

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
)

// A version is named by its number and its token (docs/protocol.md
// "Version identity"): a random string drawn when the version is created
// (sync_version_tokens). A database restored from a backup, or a standby
// failed over to that lacked the latest versions, numbers its new
// versions as those it lost; a node that holds one of the lost ones names
// a number the server holds again, but with another token, and is
// answered repair_needed, as a node naming a version past the server's
// latest is (aheadOfServer). A request without a token, or naming a
// version without one (created before tokens, or trimmed before the floor
// kept its token), is checked by number only, as before.
//
// Each check is one primary-key lookup, folded into a statement the
// request runs anyway (readPullState, checkBase, latestAndToken).

// maxVersionToken bounds the token a request names; the server draws
// tokens of 26 characters (crypto/rand.Text).
const maxVersionToken = 64

// tokenOf is the subquery reading the token of version ? (NULL when it
// has none).
const tokenOf = "(SELECT token FROM sync_version_tokens WHERE version_id = ?)"

// insertToken records a new version's token (version, token).
const insertToken = "INSERT INTO sync_version_tokens (version_id, token) VALUES (?, ?) ON CONFLICT (version_id) DO UPDATE SET token = EXCLUDED.token"

// newVersionToken draws a new version's token.
func newVersionToken() string { return rand.Text() }

// checkVersionToken refuses a token no server draws.
func checkVersionToken(token string) error {
	if len(token) > maxVersionToken {
		return fmt.Errorf("%w: latest_version_token is %d bytes long, longer than %d", dbsync.ErrBadRequest, len(token), maxVersionToken)
	}
	return nil
}

// sameVersion checks that the node's version claimed, named with token,
// is the server's version of that number, whose token is stored (nil:
// none). With either token unknown it checks nothing: the number was
// checked already. pull says the request is a pull (its text says no
// push was rejected).
func sameVersion(claimed int64, token string, stored *string, pull bool) error {
	if token == "" || stored == nil || *stored == token {
		return nil
	}
	why := fmt.Sprintf("the node holds version %d of a history the server lost (its version %d is another: restored from a backup?)", claimed, claimed)
	if pull {
		return &repairNeededError{msg: "dbsync: repair needed: " + why}
	}
	return fmt.Errorf("%w: %s", dbsync.ErrRepairNeeded, why)
}

// latestAndToken returns the greatest version id (0 when there is none)
// and, when token is set, the token the server holds for version claimed
// (nil: none), in one statement.
func latestAndToken(ctx context.Context, db bun.IDB, claimed int64, token string) (int64, *string, error) {
	if token == "" {
		latest, err := latestVersion(ctx, db)
		return latest, nil, err
	}
	var latest *int64
	var stored *string
	if err := db.NewRaw("SELECT (SELECT MAX(version_id) FROM sync_versions), "+tokenOf, claimed).Scan(ctx, &latest, &stored); err != nil {
		return 0, nil, fmt.Errorf("latest version: %w", err)
	}
	if latest == nil {
		return 0, stored, nil
	}
	return *latest, stored, nil
}

// versionToken returns version's token ("" when it has none).
func versionToken(ctx context.Context, db bun.IDB, version int64) (string, error) {
	var tokens []string
	if err := db.NewRaw("SELECT token FROM sync_version_tokens WHERE version_id = ?", version).Scan(ctx, &tokens); err != nil {
		return "", fmt.Errorf("read version %d's token: %w", version, err)
	}
	if len(tokens) == 0 {
		return "", nil
	}
	return tokens[0], nil
}

// recordToken draws the token of a version being created in tx and
// records it, over the token of a lost version of that number (a database
// that lost the versions but not their tokens).
func recordToken(ctx context.Context, tx bun.IDB, version int64) (string, error) {
	token := newVersionToken()
	if _, err := tx.NewRaw(insertToken, version, token).Exec(ctx); err != nil {
		return "", fmt.Errorf("record version %d's token: %w", version, err)
	}
	return token, nil
}
