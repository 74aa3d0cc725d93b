package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestPushFastForward walks python-sync-db's rejection table (§9) on a
// fast-forward-only server (Config.FastForwardOnly): S is the server's
// latest version, C the node's.
func TestPushFastForward(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, &server.Config{FastForwardOnly: true})
			n := f.register()
			steps := []struct {
				name    string
				claimed *int64
				want    error // nil: accepted
				version int64
			}{
				{"S=none C=1 ahead", ptr(1), dbsync.ErrRepairNeeded, 0},
				{"S=none C=none first push", nil, nil, 1},
				{"S=1 C=none behind", nil, dbsync.ErrPullNeeded, 0},
				{"S=1 C=0 behind", ptr(0), dbsync.ErrPullNeeded, 0},
				{"S=1 C=1 equal", ptr(1), nil, 2},
				{"S=2 C=1 behind", ptr(1), dbsync.ErrPullNeeded, 0},
				{"S=2 C=3 ahead", ptr(3), dbsync.ErrRepairNeeded, 0},
				// C=-1 is no version: 400 bad_request, not behind
				// (handlers.TestPushNegativeBase).
				{"S=2 C=2 equal", ptr(2), nil, 3},
			}
			for i, st := range steps {
				before := f.state()
				id := int64(i + 1)
				resp, err := f.Srv.Push(ctx, n.id, newPush(st.claimed).list(models.Insert, id, "l"+strconv.Itoa(i)).Ptr())
				if st.want != nil {
					if !errors.Is(err, st.want) || !errors.Is(err, dbsync.ErrPushRejected) {
						t.Fatalf("%s: err %v, want %v", st.name, err, st.want)
					}
					other := dbsync.ErrPullNeeded
					if st.want == dbsync.ErrPullNeeded {
						other = dbsync.ErrRepairNeeded
					}
					if errors.Is(err, other) {
						t.Fatalf("%s: err %v is also %v", st.name, err, other)
					}
					f.mustUnchanged(before, st.name)
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if resp.NewVersionID != st.version || resp.Duplicate || resp.Empty {
					t.Fatalf("%s: %+v, want version %d", st.name, resp, st.version)
				}
				after := f.state()
				if after.Versions != before.Versions+1 || len(after.Dump["lists"]) != len(before.Dump["lists"])+1 {
					t.Fatalf("%s: versions %d→%d, lists %d→%d", st.name, before.Versions, after.Versions,
						len(before.Dump["lists"]), len(after.Dump["lists"]))
				}
			}
			var v models.Version
			if err := f.DB.NewSelect().Model(&v).Where("version_id = 3").Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if v.NodeID == nil || *v.NodeID != n.id {
				t.Fatalf("version 3 node %v, want %d", v.NodeID, n.id)
			}

			// An empty push succeeds whatever the node's version, and
			// creates nothing.
			for _, claimed := range []*int64{nil, ptr(1), ptr(3), ptr(9)} {
				before := f.state()
				p := newPush(claimed)
				resp, err := f.Srv.Push(ctx, n.id, &p.req)
				if err != nil {
					t.Fatalf("empty push (C=%v): %v", claimed, err)
				}
				if !resp.Empty || resp.Duplicate || resp.NewVersionID != 3 {
					t.Fatalf("empty push (C=%v): %+v, want Empty at version 3", claimed, resp)
				}
				f.mustUnchanged(before, "empty push")
			}

			// Over HTTP, "behind" says pull_needed, "ahead" does not.
			for _, c := range []struct {
				claimed *int64
				code    string
				pull    bool
			}{{ptr(2), protocol.CodePullNeeded, true}, {nil, protocol.CodePullNeeded, true}, {ptr(7), protocol.CodeRepairNeeded, false}} {
				before := f.state()
				status, eb, raw := httpPush(t, f.Server, n, newPush(c.claimed).list(models.Insert, 100, "http").Ptr())
				if status != http.StatusConflict || eb.Error.Code != c.code || eb.Error.PullNeeded != c.pull || eb.Error.Message == "" {
					t.Fatalf("HTTP push with C=%v: %d %s, want 409 %s pull_needed=%v", c.claimed, status, raw, c.code, c.pull)
				}
				if c.pull && !strings.Contains(string(raw), `"pull_needed":true`) {
					t.Fatalf("body %s lacks \"pull_needed\":true", raw)
				}
				f.mustUnchanged(before, "refused HTTP push")
			}
			status, _, raw := httpPush(t, f.Server, n, newPush(ptr(3)).list(models.Insert, 100, "http").Ptr())
			var pr protocol.PushResponse
			if err := json.Unmarshal(raw, &pr); status != http.StatusOK || err != nil || pr.NewVersionID != 4 {
				t.Fatalf("HTTP push at the latest version: %d %s", status, raw)
			}
		})
	}
}

// TestPushExactlyOnce: a push id is applied once; a push id abandoned by a
// pull is never applied; a pull names the version of an applied push and
// leaves its operations out.
func TestPushExactlyOnce(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()

			p := newPush(nil).list(models.Insert, 1, "home").todo(models.Insert, 1, 1, "milk").todo(models.Insert, 2, 1, "eggs")
			first, err := f.Srv.Push(ctx, a.id, &p.req)
			if err != nil || first.NewVersionID != 1 || first.Duplicate {
				t.Fatalf("first push: %+v, %v", first, err)
			}
			before := f.state()
			if before.Operations != 3 || before.Pushes != 1 {
				t.Fatalf("after one push: %+v", before)
			}
			// The same request again (its answer was lost), also after
			// another node moved the server on.
			for i := range 2 {
				again, err := f.Srv.Push(ctx, a.id, &p.req)
				if err != nil {
					t.Fatalf("retry %d: %v", i, err)
				}
				if !again.Duplicate || again.NewVersionID != 1 {
					t.Fatalf("retry %d: %+v, want Duplicate of version 1", i, again)
				}
				f.mustUnchanged(before, "duplicate push")
				if i == 0 {
					if _, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Insert, 2, "work").Ptr()); err != nil {
						t.Fatal(err)
					}
					before = f.state()
				}
			}
			// Over HTTP as well.
			status, _, raw := httpPush(t, f.Server, a, &p.req)
			var pr protocol.PushResponse
			if err := json.Unmarshal(raw, &pr); status != http.StatusOK || err != nil || !pr.Duplicate || pr.NewVersionID != 1 {
				t.Fatalf("HTTP retry: %d %s", status, raw)
			}
			f.mustUnchanged(before, "duplicate HTTP push")
			// Another node cannot reuse (or learn about) a's push id.
			if _, err := f.Srv.Push(ctx, b.id, &p.req); !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("b pushing a's push id: %v, want ErrBadRequest", err)
			}
			if _, err := pull(t, f.Srv, b.id, &protocol.PullRequest{PushID: p.req.PushID}); !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("b asking about a's push id: %v, want ErrBadRequest", err)
			}
			f.mustUnchanged(before, "foreign push id")

			// A push the node gave up on before the server saw it.
			lost := newPush(ptr(2)).list(models.Insert, 3, "lost")
			msgs := mustPull(t, f.Srv, a.id, &protocol.PullRequest{LatestVersionID: ptr(2), PushID: lost.req.PushID})
			if h := msgs[0]; h.Push == nil || h.Push.PushID != lost.req.PushID || h.Push.VersionID != nil {
				t.Fatalf("header push status %+v, want not applied", h.Push)
			}
			before = f.state()
			if _, err := f.Srv.Push(ctx, a.id, &lost.req); !errors.Is(err, dbsync.ErrPushAbandoned) || !errors.Is(err, dbsync.ErrPushRejected) {
				t.Fatalf("abandoned push: %v, want ErrPushAbandoned", err)
			}
			f.mustUnchanged(before, "abandoned push")
			status, eb, raw := httpPush(t, f.Server, a, &lost.req)
			if status != http.StatusConflict || eb.Error.Code != protocol.CodePushAbandoned {
				t.Fatalf("abandoned push over HTTP: %d %s", status, raw)
			}
			f.mustUnchanged(before, "abandoned HTTP push")
			// Asking again keeps it abandoned.
			msgs = mustPull(t, f.Srv, a.id, &protocol.PullRequest{LatestVersionID: ptr(2), PushID: lost.req.PushID})
			if msgs[0].Push == nil || msgs[0].Push.VersionID != nil {
				t.Fatalf("second status %+v", msgs[0].Push)
			}

			// A push that was applied: version 3 by a, then b's version 4.
			applied := newPush(ptr(2)).list(models.Insert, 3, "applied").todo(models.Insert, 3, 3, "t3")
			if r, err := f.Srv.Push(ctx, a.id, &applied.req); err != nil || r.NewVersionID != 3 {
				t.Fatalf("push 3: %+v %v", r, err)
			}
			if r, err := f.Srv.Push(ctx, b.id, newPush(ptr(3)).list(models.Update, 2, "work!").Ptr()); err != nil || r.NewVersionID != 4 {
				t.Fatalf("push 4: %+v %v", r, err)
			}
			msgs = mustPull(t, f.Srv, a.id, &protocol.PullRequest{LatestVersionID: ptr(2), PushID: applied.req.PushID})
			h := msgs[0]
			if h.Push == nil || h.Push.VersionID == nil || *h.Push.VersionID != 3 || h.LatestVersionID == nil || *h.LatestVersionID != 4 {
				t.Fatalf("header %+v push %+v, want push applied as 3, latest 4", h, h.Push)
			}
			var versions []int64
			for _, m := range msgs {
				for _, v := range m.Versions {
					versions = append(versions, v.VersionID)
				}
			}
			if !slices.Equal(versions, []int64{3, 4}) {
				t.Fatalf("versions %v, want [3 4]", versions)
			}
			ops := pulledOps(msgs)
			if len(ops) != 1 || ops[0].Table != "lists" || ops[0].RowID != "2" || ops[0].Command != models.Update {
				t.Fatalf("operations %+v, want only b's update of list 2", ops)
			}
			// Without the push id, version 3's operations stay out as
			// well (a's own version: a holds it); b gets them, but not
			// those of its own version 4.
			if ops := pulledOps(mustPull(t, f.Srv, a.id, &protocol.PullRequest{LatestVersionID: ptr(2)})); len(ops) != 1 {
				t.Fatalf("operations without push id: %+v, want 1", ops)
			}
			if ops := pulledOps(mustPull(t, f.Srv, b.id, &protocol.PullRequest{LatestVersionID: ptr(2)})); len(ops) != 2 || ops[0].Table != "lists" || ops[1].Table != "todos" {
				t.Fatalf("operations pulled by b: %+v, want version 3's 2", ops)
			}
			// A malformed push id is refused.
			if _, err := pull(t, f.Srv, a.id, &protocol.PullRequest{PushID: "'; DROP TABLE sync_pushes; --"}); !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("malformed push id: %v", err)
			}
			// So is a UUID spelled otherwise than canonically: exactly-once
			// holds per push id string.
			for _, id := range []string{"not-a-uuid", "0B0E1D8E-7F5C-4A37-9A36-3F3C8B7E2A0A", "{0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a0a}",
				"urn:uuid:0b0e1d8e-7f5c-4a37-9a36-3f3c8b7e2a0a", "0b0e1d8e7f5c4a379a363f3c8b7e2a0a"} {
				bad := newPush(ptr(4)).list(models.Insert, 9, "x")
				bad.req.PushID = id
				before = f.state()
				if _, err := f.Srv.Push(ctx, a.id, &bad.req); !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("push with id %q: %v", id, err)
				}
				f.mustUnchanged(before, "push with malformed id "+id)
				if _, err := f.Srv.ChunkStatus(ctx, a.id, id); !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("chunk status of id %q: %v", id, err)
				}
			}
		})
	}
}

// TestPushAbandonedWhileInFlight: a pull that asks about a push while that
// very push is being applied must either see it applied, or abandon it so
// that it is not applied.
func TestPushAbandonedWhileInFlight(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			type result struct {
				status *protocol.PushStatus
				err    error
			}
			done := make(chan result, 1)
			var f *fixture
			var n node
			var pushID string
			cfg := &server.Config{BeforePush: func(_ context.Context, _ bun.Tx, info *server.PushInfo) error {
				if info.Request.PushID != pushID {
					return nil
				}
				go func() {
					msgs, err := pull(t, f.Srv, n.id, &protocol.PullRequest{PushID: pushID})
					var st *protocol.PushStatus
					if err == nil && len(msgs) > 0 {
						st = msgs[0].Push
					}
					done <- result{st, err}
				}()
				// Give the pull time to finish if it does not wait for
				// this push (PostgreSQL); on SQLite it waits for the lock.
				select {
				case r := <-done:
					done <- r
				case <-time.After(200 * time.Millisecond):
				}
				return nil
			}}
			f = newFixture(t, kind, cfg)
			n = f.register()
			p := newPush(nil).list(models.Insert, 1, "inflight")
			pushID = p.req.PushID
			resp, perr := f.Srv.Push(ctx, n.id, &p.req)
			r := <-done
			if r.err != nil {
				t.Fatalf("pull during push: %v", r.err)
			}
			st := f.state()
			switch {
			case r.status == nil:
				t.Fatalf("pull header without push status")
			case r.status.VersionID == nil:
				// The pull abandoned the push: it must not be applied.
				if !errors.Is(perr, dbsync.ErrPushAbandoned) {
					t.Fatalf("the pull reported push %s abandoned, but the push answered %+v, %v (want ErrPushAbandoned)", pushID, resp, perr)
				}
				if st.Versions != 0 || len(st.Dump["lists"]) != 0 {
					t.Fatalf("abandoned push was applied: %+v", st)
				}
			default:
				if perr != nil || resp.NewVersionID != *r.status.VersionID {
					t.Fatalf("the pull reported version %d, the push answered %+v, %v", *r.status.VersionID, resp, perr)
				}
			}
			t.Logf("pull saw %+v; push: %+v %v", r.status, resp, perr)
		})
	}
}

// TestSealDirectWrites: rows written on the server database by anything
// but a push become a version without a node, and nodes pull them.
func TestSealDirectWrites(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			c := synctest.NewClient(t, f.Server, "c", nil)
			if v, err := f.Srv.Seal(ctx); err != nil || v != 0 {
				t.Fatalf("seal with nothing pending: %d, %v", v, err)
			}
			exec := func(q string) {
				t.Helper()
				if _, err := f.DB.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			exec("INSERT INTO lists (id, name) VALUES (1, 'admin''s list')")
			exec("INSERT INTO todos (id, list_id, title, done) VALUES (1, 1, 'a', false), (2, 1, 'b', true)")
			v, err := f.Srv.Seal(ctx)
			if err != nil || v != 1 {
				t.Fatalf("seal: %d, %v, want version 1", v, err)
			}
			if v, err := f.Srv.Seal(ctx); err != nil || v != 0 {
				t.Fatalf("second seal: %d, %v, want nothing", v, err)
			}
			checkVersion := func(id int64, ops int) {
				t.Helper()
				var ver models.Version
				if err := f.DB.NewSelect().Model(&ver).Where("version_id = ?", id).Scan(ctx); err != nil {
					t.Fatalf("version %d: %v", id, err)
				}
				if ver.NodeID != nil {
					t.Fatalf("version %d has node %d, want none", id, *ver.NodeID)
				}
				n, err := f.DB.NewSelect().Model((*models.Operation)(nil)).Where("version_id = ?", id).Count(ctx)
				if err != nil || n != int64(ops) {
					t.Fatalf("version %d has %d operations (%v), want %d", id, n, err, ops)
				}
				pending, err := f.DB.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL").Count(ctx)
				if err != nil || pending != 0 {
					t.Fatalf("%d pending operations left (%v)", pending, err)
				}
			}
			checkVersion(1, 3)
			if _, err := c.Pull(ctx); err != nil {
				t.Fatalf("pull: %v", err)
			}
			same := func(what string) {
				t.Helper()
				if d := synctest.Diff(synctest.Dump(t, f.DB, f.Reg), synctest.Dump(t, c.DB, c.Reg)); d != "" {
					t.Fatalf("%s: server and client differ:\n%s", what, d)
				}
			}
			same("after seal")

			// Pull seals by itself.
			exec("UPDATE todos SET done = true WHERE id = 1")
			exec("DELETE FROM todos WHERE id = 2")
			res, err := c.Pull(ctx)
			if err != nil || res.VersionID != 2 {
				t.Fatalf("pull: %+v, %v, want version 2", res, err)
			}
			checkVersion(2, 2)
			same("after pull")

			// A push seals too: the push is rebased on the sealed version
			// (another row), which the next pull brings; the direct write
			// is not lost.
			exec("UPDATE lists SET name = 'renamed' WHERE id = 1")
			if _, err := c.DB.NewInsert().Model(&testmodels.Todo{ListID: 1, Title: "from c"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if pr, err := c.Push(ctx); err != nil || !pr.Rebased {
				t.Fatalf("push with direct writes pending: %+v, %v, want rebased", pr, err)
			}
			if _, err := c.Sync(ctx); err != nil {
				t.Fatalf("sync: %v", err)
			}
			same("after sync")
			// A direct write to a row the push changes too: the node must
			// pull first.
			exec("UPDATE todos SET done = false WHERE id = 1")
			if _, err := c.DB.NewUpdate().Model((*testmodels.Todo)(nil)).Set("title = 'by c'").Where("id = 1").Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Push(ctx); !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("push of a row changed by a direct write: %v, want ErrPullNeeded", err)
			}
			if _, err := c.Sync(ctx); err != nil {
				t.Fatalf("sync: %v", err)
			}
			same("after the second sync")
			if d := synctest.Dump(t, f.DB, f.Reg); !strings.Contains(d["lists"][0], "renamed") || len(d["todos"]) != 2 {
				t.Fatalf("server rows %v", d)
			}
			// Seal through the repair path as well.
			exec("INSERT INTO lists (id, name) VALUES (50, 'repair')")
			if err := f.Srv.Repair(ctx, 0, func(*protocol.Message) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if pending, _ := f.DB.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL").Count(ctx); pending != 0 {
				t.Fatalf("repair left %d operations unsealed", pending)
			}
		})
	}
}

// TestRepairChunks: repair streams every pulled row, ChunkSize rows a line,
// tables in dependency order, push-only tables left out.
func TestRepairChunks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// Todos registered first: the stream must still put lists first.
			f := newFixtureWith(t, kind, &server.Config{ChunkSize: 7},
				(*testmodels.Todo)(nil), (*testmodels.List)(nil), dbsync.PushOnly((*testmodels.Note)(nil)))
			var lists []testmodels.List
			for i := 1; i <= 10; i++ {
				lists = append(lists, testmodels.List{ID: int64(i), Name: fmt.Sprintf("list %d", i)})
			}
			var todos []testmodels.Todo
			for i := 1; i <= 93; i++ {
				todos = append(todos, testmodels.Todo{ID: int64(i), ListID: int64(i%10 + 1), Title: fmt.Sprintf("todo %d", i)})
			}
			notes := []testmodels.Note{{ID: uuid.New(), Body: "secret"}, {ID: uuid.New(), Body: "secret 2"}}
			for _, m := range []any{&lists, &todos, &notes} {
				if _, err := f.DB.NewInsert().Model(m).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			n := f.register()
			var msgs []*protocol.Message
			err := f.Srv.Repair(ctx, n.id, func(m *protocol.Message) error {
				raw, _ := json.Marshal(m)
				var c protocol.Message
				if err := json.Unmarshal(raw, &c); err != nil {
					return err
				}
				msgs = append(msgs, &c)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) < 2 || msgs[0].Type != protocol.MsgHeader || msgs[len(msgs)-1].Type != protocol.MsgEnd {
				t.Fatalf("repair stream %v", msgTypes(msgs))
			}
			h := msgs[0]
			if !slices.Equal(h.Tables, []string{"lists", "todos"}) {
				t.Fatalf("header tables %v, want [lists todos]", h.Tables)
			}
			if h.LatestVersionID == nil || *h.LatestVersionID != 1 {
				t.Fatalf("header latest %v, want 1 (the sealed inserts)", h.LatestVersionID)
			}
			lines := map[string]int{}
			rows := map[string]map[string]bool{}
			var order []string
			for _, m := range msgs[1 : len(msgs)-1] {
				if m.Type != protocol.MsgRows {
					t.Fatalf("line type %q", m.Type)
				}
				if len(m.Rows) == 0 || len(m.Rows) > 7 {
					t.Fatalf("%s line with %d rows, want 1..7", m.Table, len(m.Rows))
				}
				if len(order) == 0 || order[len(order)-1] != m.Table {
					order = append(order, m.Table)
				}
				lines[m.Table]++
				if rows[m.Table] == nil {
					rows[m.Table] = map[string]bool{}
				}
				tb := f.Reg.Table(m.Table)
				for _, raw := range m.Rows {
					r, err := protocol.ParseRow(raw)
					if err != nil {
						t.Fatal(err)
					}
					k, err := tb.RowKey(r)
					if err != nil {
						t.Fatal(err)
					}
					if rows[m.Table][k] {
						t.Fatalf("row %s of %s sent twice", k, m.Table)
					}
					rows[m.Table][k] = true
				}
			}
			if !slices.Equal(order, []string{"lists", "todos"}) {
				t.Fatalf("table order %v, want lists then todos", order)
			}
			if lines["lists"] != 2 || lines["todos"] != 14 || len(rows["lists"]) != 10 || len(rows["todos"]) != 93 {
				t.Fatalf("lines %v, rows lists %d todos %d; want 2 and 14 lines, 10 and 93 rows", lines, len(rows["lists"]), len(rows["todos"]))
			}
			if end := msgs[len(msgs)-1]; end.RowCount != 103 {
				t.Fatalf("end row count %d, want 103", end.RowCount)
			}
			// A pull leaves the push-only table out as well.
			for _, op := range pulledOps(mustPull(t, f.Srv, n.id, nil)) {
				if op.Table == "notes" {
					t.Fatalf("pull sent push-only operation %+v", op)
				}
			}
		})
	}
}

// TestQuery: equality filters of each column kind, pagination, and the
// tables and columns a query may not name.
func TestQuery(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixtureWith(t, kind, &server.Config{QueryLimit: 4, MaxQueryLimit: 6},
				(*testmodels.List)(nil), (*testmodels.Todo)(nil), dbsync.PushOnly((*testmodels.Note)(nil)))
			pf := newFixture(t, kind, nil) // notes pulled here
			quoted := `O'Brien "the \ list"; DROP TABLE todos; --`
			lists := []testmodels.List{{ID: 1, Name: quoted}, {ID: 2, Name: "plain"}, {ID: 3, Name: "?TableName"}}
			var todos []testmodels.Todo
			for i := 1; i <= 15; i++ {
				todos = append(todos, testmodels.Todo{ID: int64(i), ListID: int64(i%2 + 1), Title: fmt.Sprintf("t%02d", i), Done: i%3 == 0})
			}
			score := 2.5
			id1, id2 := uuid.MustParse("6f1c2b9e-0000-4000-8000-000000000001"), uuid.MustParse("6f1c2b9e-0000-4000-8000-000000000002")
			notes := []testmodels.Note{
				{ID: id1, Body: "one", Count: 7, Score: &score, Tag: sqlNull("x")},
				{ID: id2, Body: "two", Count: 7},
			}
			for _, db := range []*fixture{f, pf} {
				// One row per statement: bun leaves a column out of a
				// multi-row insert when the first row holds its zero value.
				for _, m := range []any{&lists, &todos, &notes} {
					rows := reflect.ValueOf(m).Elem()
					for i := range rows.Len() {
						if _, err := db.DB.NewInsert().Model(rows.Index(i).Addr().Interface()).Exec(ctx); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			n, pn := f.register(), pf.register()
			keys := func(srv *server.Server, node int64, req *protocol.QueryRequest) ([]string, string, error) {
				resp, err := srv.Query(ctx, node, req)
				if err != nil {
					return nil, "", err
				}
				tb := srv.Registry().Table(req.Table)
				var out []string
				for _, raw := range resp.Rows {
					r, err := protocol.ParseRow(raw)
					if err != nil {
						t.Fatal(err)
					}
					k, err := tb.RowKey(r)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, k)
				}
				return out, resp.Next, nil
			}
			cases := []struct {
				name  string
				srv   *fixture
				req   protocol.QueryRequest
				want  []string
				next  string
				isErr error
			}{
				{"int", f, protocol.QueryRequest{Table: "todos", Equal: map[string]string{"list_id": "1"}, Limit: 6}, []string{"2", "4", "6", "8", "10", "12"}, "12", nil},
				{"int and bool", f, protocol.QueryRequest{Table: "todos", Equal: map[string]string{"list_id": "2", "done": "true"}}, []string{"3", "9", "15"}, "", nil},
				{"bool false", f, protocol.QueryRequest{Table: "todos", Equal: map[string]string{"done": "false", "list_id": "2"}}, []string{"1", "5", "7", "11"}, "11", nil},
				{"string with quotes", f, protocol.QueryRequest{Table: "lists", Equal: map[string]string{"name": quoted}}, []string{"1"}, "", nil},
				{"string as JSON", f, protocol.QueryRequest{Table: "lists", Equal: map[string]string{"name": `"plain"`}}, []string{"2"}, "", nil},
				{"string with placeholder", f, protocol.QueryRequest{Table: "lists", Equal: map[string]string{"name": "?TableName"}}, []string{"3"}, "", nil},
				{"string injection", f, protocol.QueryRequest{Table: "lists", Equal: map[string]string{"name": "' OR '1'='1"}}, nil, "", nil},
				{"string no match", f, protocol.QueryRequest{Table: "lists", Equal: map[string]string{"name": "PLAIN"}}, nil, "", nil},
				{"pk", f, protocol.QueryRequest{Table: "lists", Equal: map[string]string{"id": "2"}}, []string{"2"}, "", nil},
				{"uuid", pf, protocol.QueryRequest{Table: "notes", Equal: map[string]string{"id": strings.ToUpper(id2.String())}}, []string{id2.String()}, "", nil},
				{"null", pf, protocol.QueryRequest{Table: "notes", Equal: map[string]string{"tag": "null"}}, []string{id2.String()}, "", nil},
				{"null float", pf, protocol.QueryRequest{Table: "notes", Equal: map[string]string{"score": "null"}}, []string{id2.String()}, "", nil},
				{"float", pf, protocol.QueryRequest{Table: "notes", Equal: map[string]string{"score": "2.5"}}, []string{id1.String()}, "", nil},
				{"nullable string", pf, protocol.QueryRequest{Table: "notes", Equal: map[string]string{"tag": "x"}}, []string{id1.String()}, "", nil},
				{"int32", pf, protocol.QueryRequest{Table: "notes", Equal: map[string]string{"count": "7"}}, []string{id1.String(), id2.String()}, "", nil},
				{"default limit", f, protocol.QueryRequest{Table: "todos"}, []string{"1", "2", "3", "4"}, "4", nil},
				{"limit capped", f, protocol.QueryRequest{Table: "todos", Limit: 1000}, []string{"1", "2", "3", "4", "5", "6"}, "6", nil},
				{"after", f, protocol.QueryRequest{Table: "todos", After: "12", Limit: 6}, []string{"13", "14", "15"}, "", nil},
				{"after, exact page", f, protocol.QueryRequest{Table: "todos", After: "9", Limit: 6}, []string{"10", "11", "12", "13", "14", "15"}, "", nil},
				{"bad int", f, protocol.QueryRequest{Table: "todos", Equal: map[string]string{"list_id": "1 OR 1=1"}}, nil, "", dbsync.ErrBadRequest},
				{"bad bool", f, protocol.QueryRequest{Table: "todos", Equal: map[string]string{"done": "1"}}, nil, "", dbsync.ErrBadRequest},
				{"bad uuid", pf, protocol.QueryRequest{Table: "notes", Equal: map[string]string{"id": "nope"}}, nil, "", dbsync.ErrBadRequest},
				{"bad after", f, protocol.QueryRequest{Table: "todos", After: "1; DROP TABLE todos"}, nil, "", dbsync.ErrBadRequest},
				{"unknown column", f, protocol.QueryRequest{Table: "todos", Equal: map[string]string{"title\" = title OR 1=1 --": "x"}}, nil, "", dbsync.ErrUnknownColumn},
				{"unknown table", f, protocol.QueryRequest{Table: "todos; DROP TABLE lists"}, nil, "", dbsync.ErrUnknownTable},
				{"sync table", f, protocol.QueryRequest{Table: "sync_nodes"}, nil, "", dbsync.ErrUnknownTable},
				{"push-only table", f, protocol.QueryRequest{Table: "notes"}, nil, "", dbsync.ErrUnknownTable},
			}
			for _, c := range cases {
				node := n.id
				if c.srv == pf {
					node = pn.id
				}
				got, next, err := keys(c.srv.Srv, node, &c.req)
				if c.isErr != nil {
					if !errors.Is(err, c.isErr) {
						t.Fatalf("%s: err %v, want %v", c.name, err, c.isErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if !slices.Equal(got, c.want) || next != c.next {
					t.Fatalf("%s: rows %v next %q, want %v next %q", c.name, got, next, c.want, c.next)
				}
			}
			// Walk all pages.
			var all []string
			req := protocol.QueryRequest{Table: "todos", Limit: 4}
			for range 10 {
				got, next, err := keys(f.Srv, n.id, &req)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, got...)
				if next == "" {
					break
				}
				req.After = next
			}
			if len(all) != 15 || all[0] != "1" || all[14] != "15" {
				t.Fatalf("pages gave %v, want todos 1..15", all)
			}
			// The tables are intact.
			for _, table := range []string{"lists", "todos"} {
				if n, err := f.DB.NewSelect().Table(table).Count(ctx); err != nil || n == 0 {
					t.Fatalf("table %s: %d rows, %v", table, n, err)
				}
			}
		})
	}
}

// TestPushUniqueConflict: a unique value another server row holds is
// refused with the pushed row named; moving values between the pushed rows
// is applied.
func TestPushUniqueConflict(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "home").list(models.Insert, 2, "work").Ptr()); err != nil {
				t.Fatal(err)
			}
			before := f.state()
			_, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Insert, 3, "home").Ptr())
			var uc *dbsync.UniqueConstraintError
			if !errors.As(err, &uc) {
				t.Fatalf("push of a taken name: %v, want *UniqueConstraintError", err)
			}
			if len(uc.Entries) != 1 || uc.Entries[0].Table != "lists" || uc.Entries[0].PK != "3" || !slices.Equal(uc.Entries[0].Columns, []string{"name"}) {
				t.Fatalf("entries %+v, want lists pk 3 (name)", uc.Entries)
			}
			f.mustUnchanged(before, "unique conflict")
			// An update taking the name, over HTTP.
			status, eb, raw := httpPush(t, f.Server, b, newPush(ptr(1)).list(models.Update, 2, "home").Ptr())
			if status != http.StatusConflict || eb.Error.Code != protocol.CodeUniqueConflict || len(eb.Error.Entries) != 1 ||
				eb.Error.Entries[0].PK != "2" || eb.Error.Entries[0].Table != "lists" {
				t.Fatalf("HTTP unique conflict: %d %s", status, raw)
			}
			f.mustUnchanged(before, "HTTP unique conflict")
			// Two pushed rows with the same new value: the pre-check names
			// both (the database would refuse without naming them).
			_, err = f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Insert, 3, "gym").list(models.Insert, 4, "gym").Ptr())
			if !errors.As(err, &uc) || len(uc.Entries) != 2 || uc.Entries[0].PK != "3" || uc.Entries[1].PK != "4" ||
				!slices.Equal(uc.Entries[1].Columns, []string{"name"}) {
				t.Fatalf("push of two rows with one name: %v, want entries naming lists 3 and 4", err)
			}
			f.mustUnchanged(before, "duplicate within a push")

			// Swap the names of the two lists in one push.
			resp, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Update, 1, "work").list(models.Update, 2, "home").Ptr())
			if err != nil {
				t.Fatalf("swap: %v", err)
			}
			d := synctest.Dump(t, f.DB, f.Reg)
			if !slices.Equal(d["lists"], []string{`{"id":1,"name":"work"}`, `{"id":2,"name":"home"}`}) {
				t.Fatalf("after swap: %v", d["lists"])
			}
			// A three-way rotation, and a name freed by a delete in the same push.
			resp, err = f.Srv.Push(ctx, a.id, newPush(&resp.NewVersionID).
				list(models.Insert, 3, "gym").Ptr())
			if err != nil {
				t.Fatal(err)
			}
			resp, err = f.Srv.Push(ctx, a.id, newPush(&resp.NewVersionID).
				list(models.Update, 1, "home").list(models.Update, 2, "gym").list(models.Update, 3, "work").Ptr())
			if err != nil {
				t.Fatalf("rotation: %v", err)
			}
			resp, err = f.Srv.Push(ctx, b.id, newPush(&resp.NewVersionID).del("lists", 3).list(models.Insert, 4, "work").Ptr())
			if err != nil {
				t.Fatalf("delete and reuse: %v", err)
			}
			d = synctest.Dump(t, f.DB, f.Reg)
			want := []string{`{"id":1,"name":"home"}`, `{"id":2,"name":"gym"}`, `{"id":4,"name":"work"}`}
			if !slices.Equal(d["lists"], want) || resp.NewVersionID != 5 {
				t.Fatalf("lists %v (version %d), want %v at 5", d["lists"], resp.NewVersionID, want)
			}
		})
	}
}

// TestPushSwapWithChildren: swapping the unique names of lists that have
// todos must keep the todos (ON DELETE CASCADE must not fire).
func TestPushSwapWithChildren(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a := f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "home").list(models.Insert, 2, "work").
				todo(models.Insert, 1, 1, "milk").todo(models.Insert, 2, 2, "mail").Ptr()); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Srv.Push(ctx, a.id, newPush(ptr(1)).list(models.Update, 1, "work").list(models.Update, 2, "home").Ptr()); err != nil {
				t.Fatalf("swap of lists with children: %v", err)
			}
			d := synctest.Dump(t, f.DB, f.Reg)
			if len(d["todos"]) != 2 || !slices.Equal(d["lists"], []string{`{"id":1,"name":"work"}`, `{"id":2,"name":"home"}`}) {
				t.Fatalf("after swap: %v", d)
			}
		})
	}
}

func (p *push) Ptr() *protocol.PushRequest { return &p.req }

// TestPushUniqueValuesWithPlaceholders: unique values are compared as
// values, whatever characters they hold.
func TestPushUniqueValuesWithPlaceholders(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a := f.register()
			names := []string{`a?b`, `?TableName`, `x'); DROP TABLE todos; --`}
			p := newPush(nil)
			for i, name := range names {
				p.list(models.Insert, int64(i+1), name)
			}
			if _, err := f.Srv.Push(ctx, a.id, p.Ptr()); err != nil {
				t.Fatal(err)
			}
			// A distinct value that differs from a stored one only by a
			// backslash is not a conflict.
			if _, err := f.Srv.Push(ctx, a.id, newPush(ptr(1)).list(models.Insert, 10, `a\?b`).Ptr()); err != nil {
				if errors.As(err, new(*dbsync.UniqueConstraintError)) {
				}
				t.Fatalf("push of a\\?b: %v", err)
			}
			// Each stored value, given to a new row, is a conflict naming
			// that row.
			var missed []string
			for i, name := range append(names, `a\?b`) {
				before := f.state()
				_, err := f.Srv.Push(ctx, a.id, newPush(ptr(2)).list(models.Insert, int64(20+i), name).Ptr())
				var uc *dbsync.UniqueConstraintError
				if !errors.As(err, &uc) {
					t.Fatalf("push of taken name %q: %v", name, err)
				}
				f.mustUnchanged(before, "unique conflict")
				if len(uc.Entries) != 1 || uc.Entries[0].PK != strconv.Itoa(20+i) {
					missed = append(missed, fmt.Sprintf("%q (entries %+v)", name, uc.Entries))
				}
			}
			if len(missed) > 0 {
				t.Fatalf("unique holders not found for %s", strings.Join(missed, ", "))
			}
		})
	}
}

func sqlNull(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }

// TestEvents: OnEvent receives one event per procedure, with its node,
// outcome and counts.
func TestEvents(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			rec := &events{}
			refuse := errors.New("closed for registration")
			var closed bool
			f := newFixture(t, kind, &server.Config{
				FastForwardOnly: true, // a push behind is refused
				OnEvent:         rec.on,
				AuthorizeRegister: func(context.Context, *server.RegisterInfo) (*server.Registration, error) {
					if closed {
						return nil, refuse
					}
					return nil, nil
				},
			})
			one := func(what, op string, node int64, failed bool) dbsync.Event {
				t.Helper()
				evs := rec.take()
				if len(evs) != 1 {
					t.Fatalf("%s: %d events %+v, want 1", what, len(evs), evs)
				}
				e := evs[0]
				if e.Op != op || e.Side != "server" || e.NodeID != node || (e.Err != nil) != failed || e.Duration <= 0 {
					t.Fatalf("%s: event %+v, want op %s node %d failed %v", what, e, op, node, failed)
				}
				return e
			}
			n := f.register()
			one("register", "register", n.id, false)
			closed = true
			if _, err := f.Srv.Register(ctx, nil); !errors.Is(err, dbsync.ErrForbidden) || !errors.Is(err, refuse) {
				t.Fatalf("refused register: %v", err)
			}
			if e := one("refused register", "register", 0, true); !errors.Is(e.Err, dbsync.ErrForbidden) {
				t.Fatalf("refused register event error %v", e.Err)
			}

			p := newPush(nil).list(models.Insert, 1, "a").todo(models.Insert, 1, 1, "x").todo(models.Insert, 2, 1, "y").op("todos", "3", models.Delete, nil)
			if _, err := f.Srv.Push(ctx, n.id, p.Ptr()); err != nil {
				t.Fatal(err)
			}
			if e := one("push", "push", n.id, false); e.VersionID != 1 || e.Operations != 4 || e.Rows != 4 {
				t.Fatalf("push event %+v, want version 1, 4 operations, 4 rows", e)
			}
			if _, err := f.Srv.Push(ctx, n.id, newPush(nil).list(models.Insert, 2, "b").Ptr()); !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatal(err)
			}
			if e := one("refused push", "push", n.id, true); !errors.Is(e.Err, dbsync.ErrPullNeeded) || e.VersionID != 0 {
				t.Fatalf("refused push event %+v", e)
			}
			if _, err := f.Srv.Push(ctx, n.id, p.Ptr()); err != nil {
				t.Fatal(err)
			}
			if e := one("duplicate push", "push", n.id, false); e.VersionID != 1 {
				t.Fatalf("duplicate push event %+v", e)
			}

			mustPull(t, f.Srv, n.id, nil)
			if e := one("pull of its own version", "pull", n.id, false); e.VersionID != 1 || e.Operations != 0 || e.Rows != 0 {
				t.Fatalf("pull event %+v, want version 1, no operations (its own)", e)
			}
			closed = false
			m := f.register()
			one("register", "register", m.id, false)
			mustPull(t, f.Srv, m.id, nil)
			if e := one("pull", "pull", m.id, false); e.VersionID != 1 || e.Operations != 4 || e.Rows != 3 {
				t.Fatalf("pull event %+v, want version 1, 4 operations, 3 rows", e)
			}
			if _, err := pull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(5)}); !errors.Is(err, dbsync.ErrRepairNeeded) {
				t.Fatalf("pull ahead: %v", err)
			}
			one("refused pull", "pull", n.id, true)

			if err := f.Srv.Repair(ctx, n.id, func(*protocol.Message) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if e := one("repair", "repair", n.id, false); e.Rows != 3 || e.VersionID != 1 {
				t.Fatalf("repair event %+v", e)
			}
			if _, err := f.Srv.Query(ctx, n.id, &protocol.QueryRequest{Table: "todos"}); err != nil {
				t.Fatal(err)
			}
			if e := one("query", "query", n.id, false); e.Rows != 2 {
				t.Fatalf("query event %+v", e)
			}
			if _, err := f.Srv.Query(ctx, n.id, &protocol.QueryRequest{Table: "nope"}); !errors.Is(err, dbsync.ErrUnknownTable) {
				t.Fatal(err)
			}
			one("refused query", "query", n.id, true)

			// Over HTTP: a refused signature reaches no procedure.
			bad := n
			bad.secret = "wrong"
			if status, _, _ := httpPush(t, f.Server, bad, newPush(ptr(1)).Ptr()); status != http.StatusUnauthorized {
				t.Fatalf("forged push: %d", status)
			}
			if evs := rec.take(); len(evs) != 0 {
				t.Fatalf("unauthenticated request made events %+v", evs)
			}
			if status, _, raw := httpPush(t, f.Server, n, newPush(ptr(1)).Ptr()); status != http.StatusOK {
				t.Fatalf("empty HTTP push: %d %s", status, raw)
			}
			one("empty HTTP push", "push", n.id, false)
		})
	}
}

// TestPushForeignKeys: a push must leave every reference valid; one that
// does not is refused (push_rejected), not a server error.
func TestPushForeignKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a := f.register()
			// Children before parents in the operations: applied in
			// dependency order.
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).todo(models.Insert, 1, 1, "milk").todo(models.Insert, 2, 2, "mail").
				list(models.Insert, 2, "work").list(models.Insert, 1, "home").Ptr()); err != nil {
				t.Fatalf("children first: %v", err)
			}
			orphans := func() int64 {
				t.Helper()
				var n int64
				if err := f.DB.NewRaw("SELECT COUNT(*) FROM todos WHERE list_id NOT IN (SELECT id FROM lists)").Scan(ctx, &n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			before := f.state()
			_, err := f.Srv.Push(ctx, a.id, newPush(ptr(1)).todo(models.Insert, 3, 99, "orphan").Ptr())
			if !errors.Is(err, dbsync.ErrPushRejected) || errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("orphan insert: %v, want ErrPushRejected", err)
			}
			f.mustUnchanged(before, "orphan insert")
			status, eb, raw := httpPush(t, f.Server, a, newPush(ptr(1)).todo(models.Update, 1, 42, "moved away").Ptr())
			if status != http.StatusConflict || eb.Error.Code != protocol.CodeForeignKey || eb.Error.PullNeeded {
				t.Fatalf("orphan update over HTTP: %d %s, want 409 foreign_key", status, raw)
			}
			f.mustUnchanged(before, "orphan update")

			// A parent deleted without its children is refused on both
			// databases: the server applies the node's final state and
			// never relies on ON DELETE actions (the node logged its own
			// cascades).
			var resp *protocol.PushResponse
			_, err = f.Srv.Push(ctx, a.id, newPush(ptr(1)).del("lists", 1).Ptr())
			switch {
			case errors.Is(err, dbsync.ErrPushRejected) && !errors.Is(err, dbsync.ErrPullNeeded):
				f.mustUnchanged(before, "delete without children")
				resp, err = f.Srv.Push(ctx, a.id, newPush(ptr(1)).del("todos", 1).del("lists", 1).Ptr())
				if err != nil {
					t.Fatalf("delete with children: %v", err)
				}
			default:
				t.Fatalf("delete of a parent without its children: %v", err)
			}
			if orphans() != 0 || resp.NewVersionID != 2 {
				t.Fatalf("orphans %d, version %d", orphans(), resp.NewVersionID)
			}
			// A new node gets exactly the server's rows.
			c := synctest.NewClient(t, f.Server, "c", nil)
			if _, err := c.Pull(ctx); err != nil {
				t.Fatalf("pull into a new node: %v", err)
			}
			if d := synctest.Diff(synctest.Dump(t, f.DB, f.Reg), synctest.Dump(t, c.DB, c.Reg)); d != "" {
				t.Fatalf("server and new node differ:\n%s", d)
			}
		})
	}
}

// tag has a text primary key.
type tag struct {
	bun.BaseModel `bun:"table:tags"`

	Name  string `bun:"name,pk"`
	Color string `bun:"color,notnull"`
}

// TestTextKeys: text keys from outside are written as values; keys the
// database cannot hold are refused, not a server error.
func TestTextKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			schema := func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewCreateTable().Model((*tag)(nil)).Exec(ctx)
				return err
			}
			s := synctest.NewServerWith(t, dbtest.Open(t, kind), schema, []any{(*tag)(nil)}, nil)
			f := &fixture{t: t, kind: kind, Server: s}
			n := f.register()
			row := func(name, color string) json.RawMessage {
				b, _ := json.Marshal(map[string]string{"name": name, "color": color})
				return b
			}
			names := []string{"plain", "it's", `?TableName`, "x'); DROP TABLE tags; --", "ünï ☃"}
			p := newPush(nil)
			for _, name := range names {
				p.op("tags", name, models.Insert, row(name, "red"))
			}
			if _, err := f.Srv.Push(ctx, n.id, p.Ptr()); err != nil {
				t.Fatal(err)
			}
			got := synctest.Dump(t, f.DB, f.Reg)["tags"]
			if len(got) != len(names) {
				t.Fatalf("tags %v", got)
			}
			if _, err := f.Srv.Push(ctx, n.id, newPush(ptr(1)).op("tags", "x'); DROP TABLE tags; --", models.Delete, nil).Ptr()); err != nil {
				t.Fatal(err)
			}
			before := f.state()
			for _, p := range []*push{
				newPush(ptr(2)).op("tags", "a\x00b", models.Delete, nil),
				newPush(ptr(2)).op("tags", "a\x00b", models.Insert, row("a\x00b", "red")),
				newPush(ptr(2)).op("tags", "ok", models.Insert, row("ok", "r\x00d")),
			} {
				if _, err := f.Srv.Push(ctx, n.id, p.Ptr()); !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("push of %+v: %v, want ErrBadRequest", p.req, err)
				}
			}
			f.mustUnchanged(before, "refused text keys")
			if _, err := f.Srv.Query(ctx, n.id, &protocol.QueryRequest{Table: "tags", After: "a\x00"}); !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("query after a NUL key: %v", err)
			}
			// Pages follow the database's own order of the keys.
			var want []string
			if err := f.DB.NewSelect().Model((*tag)(nil)).Column("name").Where("name > ?", "it's").Order("name").Scan(ctx, &want); err != nil {
				t.Fatal(err)
			}
			resp, err := f.Srv.Query(ctx, n.id, &protocol.QueryRequest{Table: "tags", After: "it's", Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var gotNames []string
			for _, raw := range resp.Rows {
				var r tag
				if err := json.Unmarshal(raw, &r); err != nil {
					t.Fatal(err)
				}
				gotNames = append(gotNames, r.Name)
			}
			if len(want) == 0 || !slices.Equal(gotNames, want) {
				t.Fatalf("query after it's: %v, want %v", gotNames, want)
			}
		})
	}
}
