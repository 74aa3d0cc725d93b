package todoapp

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"

	"github.com/go-dbsync/dbsync/server"
)

// UserTokens is a register hook that binds a node to the user whose token
// the registration presents ("Bearer " + token, the todo client's -token):
// tokens maps each token to its user. The server records the user with the
// node (Registration.UserID) and evaluates Scopes with it on every later
// request of the node. A real application checks its own credentials here
// (a session, an OAuth token) and returns the user they prove.
func UserTokens(tokens map[string]string) func(context.Context, *server.RegisterInfo) (*server.Registration, error) {
	return func(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
		got := []byte(strings.TrimPrefix(info.Credentials, "Bearer "))
		var user string
		for token, u := range tokens {
			// Every token compared, in constant time each.
			if subtle.ConstantTimeCompare(got, []byte(token)) == 1 {
				user = u
			}
		}
		if user == "" {
			return nil, errors.New("a valid user token is required")
		}
		return &server.Registration{UserID: &user}, nil
	}
}

// AnyUser is a register hook for trying the example out: the token is
// taken as the user's name, unchecked ("Bearer alice" registers as alice).
// Never in production: anyone can be anyone.
func AnyUser(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
	user, ok := strings.CutPrefix(info.Credentials, "Bearer ")
	if !ok || user == "" {
		return nil, errors.New("a user name is required as the token")
	}
	return &server.Registration{UserID: &user}, nil
}

// ParseUsers reads the todo-server's -users flag: "alice:s3cret,bob:hunter2",
// a user and its token per comma-separated item. It returns the tokens by
// token, as UserTokens takes them.
func ParseUsers(s string) (map[string]string, error) {
	out := map[string]string{}
	for item := range strings.SplitSeq(s, ",") {
		user, token, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok || user == "" || token == "" {
			return nil, errors.New("-users: want user:token items separated by commas, e.g. alice:s3cret,bob:hunter2")
		}
		if _, dup := out[token]; dup {
			return nil, errors.New("-users: two users with the same token")
		}
		out[token] = user
	}
	return out, nil
}
