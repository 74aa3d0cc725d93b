package synctest

import (
	"context"
	"errors"
	"strings"

	"github.com/go-dbsync/dbsync/server"
)

// ScopeRules are the rules of the multi-user test schema
// (testmodels.Scoped): a project is its owner's and its members'; members
// and tasks follow their project; tags are read by all, written by none.
func ScopeRules() server.Scopes {
	return server.Scopes{
		"projects": server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("members", "project_id", "user_id")),
		"members":  server.ThroughParent("project_id"),
		"tasks":    server.ThroughParent("project_id"),
		"tags":     server.Global(),
	}
}

// BearerUser is a register hook for tests: "Bearer <user>" binds the node
// to that user, "Bearer nobody" to no user; anything else is refused.
func BearerUser(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
	user, ok := strings.CutPrefix(info.Credentials, "Bearer ")
	if !ok || user == "" {
		return nil, errors.New("no bearer token")
	}
	if user == "nobody" {
		return &server.Registration{}, nil
	}
	return &server.Registration{UserID: &user}, nil
}
