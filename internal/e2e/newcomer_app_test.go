package e2e_test

// A shared-shopping-list application written from the README,
// docs/protocol.md and the godoc only: a PostgreSQL server behind chi
// with token registration and scopes, three SQLite devices of two users
// on loopback HTTP, one of them watching the live change feed, one
// offline for a while, a list shared and unshared, a forbidden write and
// a conflict on one item, and the log trimmed.

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/server"
)

type shopList struct {
	bun.BaseModel `bun:"table:shop_lists"`

	ID      uuid.UUID `bun:"id,pk,type:uuid"`
	OwnerID string    `bun:"owner_id,notnull"`
	Name    string    `bun:"name,notnull"`
}

type shopMember struct {
	bun.BaseModel `bun:"table:shop_members"`

	ID     uuid.UUID `bun:"id,pk,type:uuid"`
	ListID uuid.UUID `bun:"list_id,notnull,type:uuid"`
	UserID string    `bun:"user_id,notnull"`
}

type shopItem struct {
	bun.BaseModel `bun:"table:shop_items"`

	ID     uuid.UUID `bun:"id,pk,type:uuid"`
	ListID uuid.UUID `bun:"list_id,notnull,type:uuid"`
	Name   string    `bun:"name,notnull"`
	Qty    int       `bun:"qty,notnull"`
	Done   bool      `bun:"done,notnull"`
}

func shopModels() []any {
	return []any{(*shopList)(nil), (*shopMember)(nil), (*shopItem)(nil)}
}

// shopCreateTables creates the application's tables, as the README's
// quick start does, with the foreign keys the scope rules follow.
func shopCreateTables(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewCreateTable().Model((*shopList)(nil)).IfNotExists().Exec(ctx); err != nil {
		return err
	}
	for _, m := range []any{(*shopMember)(nil), (*shopItem)(nil)} {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().
			ForeignKey(`("list_id") REFERENCES "shop_lists" ("id") ON DELETE CASCADE`).
			Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

func shopOpenSQLite(t *testing.T, path string) *bun.DB {
	t.Helper()
	sqldb, err := sql.Open(sqliteshim.ShimName, "file:"+path+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=recursive_triggers(1)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(sqldb, sqlitedialect.New())
	t.Cleanup(func() { db.Close() })
	return db
}

// shopOpenPG creates a database of its own on the PostgreSQL server and
// drops it when the test ends.
func shopOpenPG(t *testing.T, ctx context.Context) *bun.DB {
	t.Helper()
	base := os.Getenv("DBSYNC_TEST_POSTGRES")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL: %v", err)
		}
		t.Skipf("PostgreSQL not reachable: %v", err)
	}
	name := "dbsync_newcomer_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer a.Close()
		a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	dsn := strings.Replace(base, "/test?", "/"+name+"?", 1)
	if !strings.Contains(dsn, name) {
		t.Fatalf("cannot point %q at a database of its own", base)
	}
	sqldb, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(sqldb, pgdialect.New())
	t.Cleanup(func() { db.Close() })
	return db
}

// shopDevice is one device: its SQLite file and its client.
type shopDevice struct {
	name string
	db   *bun.DB
	c    *client.Client
}

func TestNewcomerShoppingListApp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	clk := dbtest.NewClock(start) // the server's and the devices'; moved for the laptop's trip
	step := func(what string) { t.Logf("%6.2fs %s", time.Since(start).Seconds(), what) }

	step("server")
	sdb := shopOpenPG(t, ctx)
	if err := shopCreateTables(ctx, sdb); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(sdb, shopModels()...)
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{"Bearer alice-token": "alice", "Bearer bob-token": "bob"}
	var evMu sync.Mutex
	var trims int
	srv, err := server.New(ctx, sdb, reg, &server.Config{
		AuthorizeRegister: func(ctx context.Context, info *server.RegisterInfo) (*server.Registration, error) {
			user, ok := tokens[info.Credentials]
			if !ok {
				return nil, errors.New("unknown token")
			}
			return &server.Registration{UserID: &user}, nil
		},
		Scopes: server.Scopes{
			"shop_lists": server.AnyOf(server.OwnedBy("owner_id"),
				server.MemberOf("shop_members", "list_id", "user_id")),
			"shop_members": server.ThroughParent("list_id"),
			"shop_items":   server.ThroughParent("list_id"),
		},
		TrimEvery: 200 * time.Millisecond,
		// A device silent longer no longer holds the log back; the
		// laptop's trip (the server's clock moved past it) retires it.
		NodeHorizon: shopHorizon,
		Now:         clk.Now,
		OnEvent: func(_ context.Context, e dbsync.Event) {
			if e.Op == "trim" && e.Err == nil {
				evMu.Lock()
				trims++
				evMu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Mount("/api/sync", handlers.New(srv, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := handlers.NewHTTPServer(ln.Addr().String(), r, nil)
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	defer func() { hs.Close(); step("http closed") }()
	defer func() { srv.Close(); step("server closed") }()
	url := "http://" + ln.Addr().String() + "/api/sync"

	step("devices")
	dir := t.TempDir()
	newDevice := func(name, token string, onEvent dbsync.EventFunc) *shopDevice {
		db := shopOpenSQLite(t, filepath.Join(dir, name+".db"))
		if err := shopCreateTables(ctx, db); err != nil {
			t.Fatal(err)
		}
		creg, err := dbsync.Track(db, shopModels()...)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(ctx, db, creg, &client.Config{URL: url, OnEvent: onEvent, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.RegisterWith(ctx, &client.RegisterOptions{Credentials: "Bearer " + token}); err != nil {
			t.Fatalf("%s: register: %v", name, err)
		}
		return &shopDevice{name: name, db: db, c: c}
	}
	alicePhone := newDevice("alice-phone", "alice-token", nil)
	aliceLaptop := newDevice("alice-laptop", "alice-token", nil)
	// Bob's phone watches the change feed, which retries refusals only
	// the application can settle: the app finds them in its events.
	bobRefused := make(chan *dbsync.ScopeError, 16)
	bobPhone := newDevice("bob-phone", "bob-token", func(_ context.Context, e dbsync.Event) {
		var se *dbsync.ScopeError
		if e.Err != nil && !errors.As(e.Err, &se) {
			t.Logf("bob-phone %s failed: %v", e.Op, e.Err) // retried by Watch
		}
		if se != nil {
			t.Logf("bob-phone %s refused: %v", e.Op, e.Err)
			// The error says which side refused, and why.
			if want := map[string]string{"push": "the server refused the push", "pull": "pull refused: the node has unpushed changes to rows that left its scope"}[e.Op]; !strings.Contains(e.Err.Error(), want) {
				t.Errorf("bob-phone's %s refusal %q does not say %q", e.Op, e.Err, want)
			}
			select {
			case bobRefused <- se:
			default:
			}
		}
	})
	if u, err := bobPhone.c.UserID(ctx); err != nil || u != "bob" {
		t.Fatalf("bob's phone belongs to %q (%v)", u, err)
	}
	step("unknown token")
	// A token the server does not know is refused.
	{
		db := shopOpenSQLite(t, filepath.Join(dir, "mallory.db"))
		if err := shopCreateTables(ctx, db); err != nil {
			t.Fatal(err)
		}
		creg, _ := dbsync.Track(db, shopModels()...)
		c, err := client.New(ctx, db, creg, &client.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.RegisterWith(ctx, &client.RegisterOptions{Credentials: "Bearer nope"})
		t.Logf("register with an unknown token: %v", err)
		if !errors.Is(err, dbsync.ErrForbidden) {
			t.Fatalf("register with an unknown token: %v, want ErrForbidden", err)
		}
	}

	sync := func(d *shopDevice) *client.SyncResult {
		t.Helper()
		res, err := d.c.Sync(ctx)
		if err != nil {
			t.Fatalf("%s: sync: %v", d.name, err)
		}
		return res
	}

	step("alice writes")
	// Alice's phone: a list to share and a private one.
	groceries := shopList{ID: uuid.New(), OwnerID: "alice", Name: "Groceries"}
	gifts := shopList{ID: uuid.New(), OwnerID: "alice", Name: "Gifts"}
	milk := shopItem{ID: uuid.New(), ListID: groceries.ID, Name: "milk", Qty: 1}
	eggs := shopItem{ID: uuid.New(), ListID: groceries.ID, Name: "eggs", Qty: 12}
	watch := shopItem{ID: uuid.New(), ListID: gifts.ID, Name: "watch for Bob", Qty: 1}
	for _, m := range []any{&groceries, &gifts, &milk, &eggs, &watch} {
		if _, err := alicePhone.db.NewInsert().Model(m).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sync(alicePhone)
	sync(aliceLaptop)
	if n := shopCount(t, aliceLaptop.db, "shop_items"); n != 3 {
		t.Fatalf("alice's laptop holds %d items, want 3", n)
	}

	step("bob watches")
	// Bob's phone watches the change feed.
	watchCtx, stopWatch := context.WithCancel(ctx)
	changed := make(chan struct{}, 1)
	watchDone := make(chan error, 1)
	go func() { watchDone <- bobPhone.c.Watch(watchCtx, &client.WatchOptions{Changed: changed}) }()
	defer func() {
		stopWatch()
		<-watchDone
		step("watch stopped")
	}()
	if n := shopWaitCount(t, bobPhone.db, "shop_lists", 0); n != 0 {
		t.Fatalf("bob's phone holds %d lists before any share", n)
	}

	step("share")
	// Share: Alice adds Bob to Groceries; his watching phone receives the
	// list and its items (move in), never Gifts.
	if _, err := alicePhone.db.NewInsert().Model(&shopMember{ID: uuid.New(), ListID: groceries.ID, UserID: "bob"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	sync(alicePhone)
	if n := shopWaitCount(t, bobPhone.db, "shop_items", 2); n != 2 {
		t.Fatalf("bob's phone holds %d items after the share, want 2", n)
	}
	if n := shopCount(t, bobPhone.db, "shop_lists"); n != 1 {
		t.Fatalf("bob's phone holds %d lists, want 1 (Groceries)", n)
	}

	step("offline edits")
	// Alice's laptop goes offline; it and Bob change milk's quantity.
	if _, err := aliceLaptop.db.NewUpdate().Model((*shopItem)(nil)).Set("qty = 2").Where("id = ?", milk.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bobPhone.db.NewUpdate().Model((*shopItem)(nil)).Set("qty = 3").Where("id = ?", milk.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case changed <- struct{}{}:
	default:
	}
	shopWaitServer(t, sdb, "SELECT qty FROM shop_items WHERE id = ?", milk.ID, 3)
	step("offline insert")
	// Offline meanwhile, the laptop adds bread.
	bread := shopItem{ID: uuid.New(), ListID: groceries.ID, Name: "bread", Qty: 1}
	if _, err := aliceLaptop.db.NewInsert().Model(&bread).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	step("conflict")
	// Back online: its push is refused (Bob changed milk first), it pulls,
	// merges (the default rule: the merging node's change wins) and pushes.
	res := sync(aliceLaptop)
	t.Logf("alice-laptop back online: %v", res)
	conflicts := 0
	for _, p := range res.Pulls {
		for _, n := range p.Conflicts {
			conflicts += n
		}
	}
	t.Logf("conflicts reported: %d", conflicts)
	shopWaitServer(t, sdb, "SELECT qty FROM shop_items WHERE id = ?", milk.ID, 2)
	shopWaitLocal(t, bobPhone.db, "SELECT qty FROM shop_items WHERE id = ?", milk.ID, 2)

	step("forbidden writes, unshare")
	// A forbidden write: Bob takes Groceries over. The push is refused
	// whole with a *dbsync.ScopeError naming the row; Watch retries it,
	// the app sees it in its events and gives the change up.
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := bobPhone.db.NewUpdate().Model((*shopList)(nil)).Set("owner_id = 'bob'").Where("id = ?", groceries.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	poke()
	se := shopRefusal(t, bobRefused)
	if len(se.Entries) != 1 || se.Entries[0].Table != "shop_lists" {
		t.Fatalf("refusal names %v, want the list", se.Entries)
	}
	if err := bobPhone.c.DiscardPending(ctx, se.Entries); err != nil {
		t.Fatal(err)
	}
	shopWaitLocal(t, bobPhone.db, "SELECT count(*) FROM shop_lists WHERE owner_id = 'alice' AND id = ?", groceries.ID, 1)
	shopWaitServer(t, sdb, "SELECT count(*) FROM shop_lists WHERE owner_id = 'alice' AND id = ?", groceries.ID, 1)

	// Bob's phone goes offline (the feed stops).
	stopWatch()
	if err := <-watchDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("watch: %v", err)
	}
	// Another forbidden write, by hand: Bob creates a list under the key
	// of Alice's private list (he cannot see it, but keys may leak).
	if _, err := bobPhone.db.NewInsert().Model(&shopList{ID: gifts.ID, OwnerID: "bob", Name: "mine now"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = bobPhone.c.Sync(ctx)
	se = nil
	if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0].PK != gifts.ID.String() {
		t.Fatalf("bob writes over Alice's private list: %v, want a *dbsync.ScopeError naming it", err)
	}
	t.Logf("direct Sync refused: %v (push rejected: %v)", err, errors.Is(err, dbsync.ErrPushRejected))
	if err := bobPhone.c.DiscardPending(ctx, se.Entries); err != nil {
		t.Fatal(err)
	}
	if n := shopCount(t, bobPhone.db, "shop_lists"); n != 1 {
		t.Fatalf("bob's phone holds %d lists after giving his insert up, want 1", n)
	}
	var giftsName string
	if err := sdb.NewRaw("SELECT name FROM shop_lists WHERE id = ?", gifts.ID).Scan(ctx, &giftsName); err != nil || giftsName != "Gifts" {
		t.Fatalf("the server's private list: %q, %v", giftsName, err)
	}

	// Bob edits eggs offline while Alice unshares the list: back online,
	// his pull refuses to drop the pending change (ScopeError); he gives
	// it up and the list leaves his phone (move out).
	if _, err := bobPhone.db.NewUpdate().Model((*shopItem)(nil)).Set("done = true").Where("id = ?", eggs.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := alicePhone.db.NewDelete().Model((*shopMember)(nil)).Where("list_id = ? AND user_id = 'bob'", groceries.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	sync(alicePhone)
	for len(bobRefused) > 0 {
		<-bobRefused
	}
	watchCtx2, stopWatch2 := context.WithCancel(ctx)
	defer stopWatch2()
	stopWatch = stopWatch2
	go func() { watchDone <- bobPhone.c.Watch(watchCtx2, &client.WatchOptions{Changed: changed}) }()
	se = shopRefusal(t, bobRefused)
	if len(se.Entries) != 1 || se.Entries[0].Table != "shop_items" {
		t.Fatalf("refusal names %v, want eggs", se.Entries)
	}
	if err := bobPhone.c.DiscardPending(ctx, se.Entries); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"shop_lists", "shop_members", "shop_items"} {
		if n := shopWaitCount(t, bobPhone.db, table, 0); n != 0 {
			t.Errorf("bob's phone still holds %d rows of %s after the unshare", n, table)
		}
	}

	step("converge")
	// Everyone syncs; Alice's devices hold the server's rows.
	sync(aliceLaptop)
	sync(alicePhone)
	sync(bobPhone)
	for _, d := range []*shopDevice{alicePhone, aliceLaptop} {
		for _, table := range []string{"shop_lists", "shop_members", "shop_items"} {
			if got, want := shopCount(t, d.db, table), shopCount(t, sdb, table); got != want {
				t.Errorf("%s holds %d rows of %s, the server %d", d.name, got, table, want)
			}
		}
	}

	step("trim")
	// The log: trimmed by TrimEvery, and on demand.
	tr, err := srv.Trim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trim: %+v", tr)
	if tr.Floor == 0 {
		t.Errorf("trim left the floor at 0 with every node synced: %+v", tr)
	}
	evMu.Lock()
	t.Logf("periodic trims: %d", trims)
	evMu.Unlock()
	sync(alicePhone)

	// Alice's laptop goes offline past the horizon: the log it needs is
	// trimmed meanwhile, and its next Sync resets it, keeping its edit.
	if _, err := aliceLaptop.db.NewUpdate().Model((*shopItem)(nil)).Set("name = 'bread (rye)'").Where("id = ?", bread.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(shopHorizon + time.Minute) // the trip
	for range 3 {
		if _, err := alicePhone.db.NewUpdate().Model((*shopItem)(nil)).Set("qty = qty + 1").Where("id = ?", eggs.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		sync(alicePhone)
	}
	// A node holds the log back at the version it named last (its
	// pull's base): Bob's second Sync names the latest one. Once, it
	// could name the version he held before the trip when his Watch had
	// not pulled in between (a busy machine), and the floor stayed at
	// the laptop's.
	sync(bobPhone)
	sync(bobPhone)
	if tr, err := srv.Trim(ctx); err != nil {
		t.Fatal(err)
	} else if tr.RetiredNodes == 0 {
		t.Errorf("no node retired after the laptop's trip: %+v", tr)
	}
	res = sync(aliceLaptop)
	t.Logf("alice-laptop back after its trip: %v", res)
	if res.Reset == nil {
		t.Errorf("the laptop's Sync did not reset: %v", res)
	}
	shopWaitServer(t, sdb, "SELECT count(*) FROM shop_items WHERE name = 'bread (rye)' AND id = ?", bread.ID, 1)
	sync(alicePhone)

	// A device new after the trim: its first Sync gets all of Alice's
	// rows (a reset, the log below the floor gone).
	aliceTablet := newDevice("alice-tablet", "alice-token", nil)
	res = sync(aliceTablet)
	t.Logf("alice-tablet's first sync: %v", res)
	for _, table := range []string{"shop_lists", "shop_members", "shop_items"} {
		if got, want := shopCount(t, aliceTablet.db, table), shopCount(t, sdb, table); got != want {
			t.Errorf("alice-tablet holds %d rows of %s, the server %d", got, table, want)
		}
	}
	// A member shares the list further: Bob, back on Groceries, adds
	// Carol (README: "A node may share what it holds").
	if _, err := alicePhone.db.NewInsert().Model(&shopMember{ID: uuid.New(), ListID: groceries.ID, UserID: "bob"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	sync(alicePhone)
	sync(bobPhone)
	if _, err := bobPhone.db.NewInsert().Model(&shopMember{ID: uuid.New(), ListID: groceries.ID, UserID: "carol"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// No rule keeps sharing to owners; an application that wants it
	// refuses such rows in server.Config.BeforePush.
	if _, err := bobPhone.c.Sync(ctx); err != nil {
		t.Fatalf("bob shares Alice's list with carol: %v", err)
	}
	step("end")
	t.Cleanup(func() { step("cleaned up") })
}

// shopHorizon is the server's NodeHorizon in TestNewcomerShoppingListApp.
// The test moves the server's clock (and the devices', which sign their
// requests with it) past it for the laptop's trip only: with a horizon in
// real time, a device the busy machine held back for as long was retired
// too, and its next Sync reset it, dropping its pending unshare (merge.md
// T5), so the refusal the test waits for never came.
const shopHorizon = time.Hour

// shopRefusal waits for a refusal a watching device reported.
func shopRefusal(t *testing.T, ch <-chan *dbsync.ScopeError) *dbsync.ScopeError {
	t.Helper()
	select {
	case se := <-ch:
		return se
	case <-time.After(shopWait):
		t.Fatalf("no refusal reported within %s", shopWait)
		return nil
	}
}

func shopCount(t *testing.T, db *bun.DB, table string) int {
	t.Helper()
	var n int
	if err := db.NewRaw("SELECT count(*) FROM "+table).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// shopWait bounds each wait for what a watching device does by itself:
// generous, for a busy machine under the race detector (a wait, not a
// timed assertion).
const shopWait = time.Minute

// shopWaitCount waits up to shopWait for a table to hold want rows (a watching
// device syncs by itself), and returns what it holds.
func shopWaitCount(t *testing.T, db *bun.DB, table string, want int) int {
	t.Helper()
	deadline := time.Now().Add(shopWait)
	for {
		n := shopCount(t, db, table)
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func shopWaitServer(t *testing.T, db *bun.DB, query string, arg any, want int) {
	t.Helper()
	shopWaitLocal(t, db, query, arg, want)
}

func shopWaitLocal(t *testing.T, db *bun.DB, query string, arg any, want int) {
	t.Helper()
	deadline := time.Now().Add(shopWait)
	for {
		var n int
		if err := db.NewRaw(query, arg).Scan(context.Background(), &n); err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", query, n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
