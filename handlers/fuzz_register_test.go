package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// FuzzRegisterRequest fuzzes the body, the Authorization header and the
// schema headers (X-Dbsync-Schema, -Tables, -Nullable) of POST /register,
// to a server whose hook accepts "Bearer <user>" (user valid UTF-8, at most
// server.MaxUserIDBytes; binding the node to user, none when empty) or,
// without credentials, extra_data {"token":"open sesame"}. The server must never answer 5xx (nor panic),
// must answer errors as JSON without the database's text, a refused
// registration must create no node, and an accepted one exactly the node
// it answers. "$FP" and "$TABLES" stand for the server's schema
// fingerprint and text.
func FuzzRegisterRequest(f *testing.F) {
	e := newEnv(f, dbtest.KindSQLite, &envConfig{
		server: &server.Config{AuthorizeRegister: func(_ context.Context, info *server.RegisterInfo) (*server.Registration, error) {
			if user, ok := strings.CutPrefix(info.Credentials, "Bearer "); ok {
				if !utf8.ValidString(user) || len(user) > server.MaxUserIDBytes {
					// A user id is text, and not too long
					// (server.Registration.UserID): a token
					// verifier answers one.
					return nil, errors.New("not a valid token")
				}
				if user == "" {
					return nil, nil
				}
				return &server.Registration{UserID: &user}, nil
			}
			var extra struct{ Token string }
			if info.Credentials != "" || json.Unmarshal(info.Request.ExtraData, &extra) != nil || extra.Token != "open sesame" {
				return nil, errors.New("no valid token")
			}
			return nil, nil
		}},
		handlers: &handlers.Config{Registration: handlers.RateLimit{Every: -1}},
	})
	for _, s := range [][5]string{
		{`{}`, "Bearer ann", "$FP", "", ""},
		{``, "Bearer ", "$FP", "", ""},
		{`{"extra_data":{"token":"open sesame"}}`, "", "$FP", "", ""},
		{`{"extra_data":{"token":"open sesame"}}`, "", "$FP", "$TABLES", "1;notes:data,meta,score,tag"},
		{`{"extra_data":{"token":"wrong"}}`, "", "$FP", "", ""},
		{`{"extra_data":"open sesame"}`, "", "$FP", "", ""},
		{`{"extra_data":null}`, "Bearer bob", "$FP", "$TABLES", ""},
		{`{"extra_data":{"device":"phone"},"other":1}`, "Bearer caf\xe9", "$FP", "", ""},
		{`{}`, "Bearer ann", "0123456789abcdef0123456789abcdef", "", ""},
		{`{}`, "Bearer ann", "", "", ""},
		{`{}`, "Bearer ann", "$FP", "junk", ""},
		{`{}`, "Bearer ann", "$FP", "1;lists:i:id=int,name=string", ""},
		{`{}`, "Bearer ann", "$FP", "1;lists:i:id=int,name=string;lists:i:id=int,name=string", ""},
		{`{}`, "Bearer ann", "$FP", "", "1;notes:score!"},
		{`{}`, "Bearer ann", "$FP", "", "1;nope:x"},
		{`{}`, "Bearer ann", "$FP", "", "junk"},
		{`{}`, "Bearer ann", "$FP", "", "1;notes:score,score"},
		{`{}`, "", "$FP", "", ""},
		{`{}`, "Basic dG9rZW4=", "$FP", "", ""},
		{`{"extra_data":{"token":"open sesame"}} trailing`, "", "$FP", "", ""},
		{`{"extra_data":{"token":"open sesame"}}{}`, "", "$FP", "", ""},
		{`null`, "Bearer ann", "$FP", "", ""},
		{`[]`, "Bearer ann", "$FP", "", ""},
		{`{`, "Bearer ann", "$FP", "", ""},
		{"\xff\xfe", "Bearer ann", "$FP", "", ""},
		{`{"extra_data":` + strings.Repeat("[", 80) + strings.Repeat("]", 80) + `}`, "Bearer ann", "$FP", "", ""},
		{`{"extra_data":{"token":"open sesame","user":"\u0000\ud800"}}`, "", "$FP", "", ""},
		{`{}`, "Bearer " + strings.Repeat("a", 5000), "$FP", "", ""},
		{`{}`, "Bearer ann'; DROP TABLE sync_nodes; --", "$FP", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, body, credentials, fingerprint, tables, nullable string) {
		e := e.with(t)
		fingerprint = strings.ReplaceAll(fingerprint, "$FP", e.s.Reg.Fingerprint())
		tables = strings.ReplaceAll(tables, "$TABLES", e.s.Reg.NodeSchema().String())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/register", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(protocol.HeaderProtocol, strconv.Itoa(protocol.ProtocolVersion))
		for k, v := range map[string]string{"Authorization": credentials, protocol.HeaderSchema: fingerprint,
			protocol.HeaderTables: tables, protocol.HeaderNullable: nullable} {
			if v != strings.TrimSpace(v) || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				return // the server would see another value, or no client can send it
			}
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		before := e.state()
		status, raw, d := e.do(req)
		switch {
		case status == http.StatusOK:
			var rr protocol.RegisterResponse
			if err := json.Unmarshal(raw, &rr); err != nil || rr.Node.NodeID <= 0 || rr.Node.Secret == "" {
				t.Fatalf("register: 200 %q (%v)", raw, err)
			}
			var n models.Node
			if err := e.s.DB.NewSelect().Model(&n).Where("node_id = ?", rr.Node.NodeID).Scan(ctx); err != nil {
				t.Fatalf("registered node %d: %v", rr.Node.NodeID, err)
			}
			user, _ := strings.CutPrefix(credentials, "Bearer ")
			if !strings.HasPrefix(credentials, "Bearer ") {
				user = ""
			}
			if n.Secret != rr.Node.Secret || (n.RegistryUserID == nil) != (user == "") || (user != "" && (*n.RegistryUserID != user || *rr.Node.RegistryUserID != user)) {
				t.Fatalf("registered %+v, answered %+v, for credentials %q", n, rr.Node, credentials)
			}
			if after := e.state(); after.Nodes != before.Nodes+1 {
				t.Fatalf("one registration: nodes %d→%d", before.Nodes, after.Nodes)
			}
		case status >= 400 && status < 500:
			e.unchanged(before, "refused registration")
			dbtest.NoDatabaseText(t, "refused registration", d.Message)
		default:
			t.Fatalf("register %q with %q %q %q %q: %d %s", body, credentials, fingerprint, tables, nullable, status, raw)
		}
	})
}
