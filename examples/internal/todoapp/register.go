package todoapp

import (
	"context"
	"crypto/subtle"
	"errors"

	"github.com/go-dbsync/dbsync/server"
)

// TokenRegistration is a register hook that lets in the callers presenting
// "Bearer " + token (the todo client's -token). A real application checks
// its own credentials there (a session, an OAuth token) and can record the
// user with the node (Registration.UserID).
func TokenRegistration(token string) func(context.Context, *server.RegisterInfo) (*server.Registration, error) {
	want := []byte("Bearer " + token)
	return func(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
		if subtle.ConstantTimeCompare([]byte(info.Credentials), want) != 1 {
			return nil, errors.New("a valid registration token is required")
		}
		return &server.Registration{}, nil
	}
}
