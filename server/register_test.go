package server_test

import (
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// TestRegistrationMustBeChosen: a server without a register hook is not
// created (registration is never open by default), and OpenRegistration
// opens it explicitly.
func TestRegistrationMustBeChosen(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			if err := testmodels.CreateSchema(ctx, db); err != nil {
				t.Fatal(err)
			}
			reg, err := dbsync.Track(db, testmodels.All()...)
			if err != nil {
				t.Fatal(err)
			}
			for _, cfg := range []*server.Config{nil, {}} {
				if _, err := server.New(ctx, db, reg, cfg); !errors.Is(err, server.ErrRegisterHookRequired) {
					t.Fatalf("New with %+v: %v, want ErrRegisterHookRequired", cfg, err)
				}
			}
			srv, err := server.New(ctx, db, reg, &server.Config{AuthorizeRegister: server.OpenRegistration})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Register(ctx, &server.RegisterInfo{RemoteAddr: "192.0.2.1:5"})
			if err != nil || resp.Node.NodeID == 0 || resp.Node.RegistryUserID != nil {
				t.Fatalf("open registration: %+v %v", resp, err)
			}
		})
	}
}
