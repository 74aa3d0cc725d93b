// Package client is the node side of dbsync: it registers with a server,
// pushes the node's captured changes, pulls and merges the server's, and
// can repair the local database or query the server's, over HTTP.
//
//	reg, _ := dbsync.Track(db, (*List)(nil), (*Todo)(nil))
//	c, _ := client.New(ctx, db, reg, &client.Config{URL: "http://host/sync"})
//	if ok, _ := c.IsRegistered(ctx); !ok {
//		c.Register(ctx, nil)
//	}
//	// … the application writes to db as it likes, online or not …
//	res, err := c.Sync(ctx) // push; on rejection pull, merge, push again
//
// Every call is safe to retry. A push whose answer was lost is resent with
// the same push id and applied once; a pull or repair that fails leaves the
// local database as it was (the response is downloaded to a temporary file
// first, then applied in one transaction).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

// Config tunes a [Client]. URL is required.
type Config struct {
	// URL is where the server's handlers are mounted, e.g.
	// "https://example.com/sync".
	URL string
	// HTTPClient sends the requests. Default: a client with a 30 s
	// connect/response-header timeout and no overall timeout (pulls and
	// repairs stream); pass contexts with deadlines to bound a call.
	HTTPClient *http.Client
	// Logger receives the client's log lines. Default: discard.
	Logger *slog.Logger
	// Policies sets the conflict policy of individual tables (by table
	// name); DefaultPolicy the others. Default: merge.Default (dbsync's
	// rules). See merge.md.
	Policies      map[string]merge.Policy
	DefaultPolicy merge.Policy
	// MaxSyncRounds bounds the pulls of one Sync (each followed by a
	// push). Default 5.
	MaxSyncRounds int
	// ChunkSize asks the server for at most this many operations per pull
	// chunk (0: the server's default).
	ChunkSize int
	// SpoolDir is where pull and repair responses are downloaded before
	// they are applied. Default: os.TempDir().
	SpoolDir string
	// OnEvent receives one event per procedure (for metrics).
	OnEvent dbsync.EventFunc
	// OnProgress receives progress reports during pulls and repairs.
	OnProgress dbsync.ProgressFunc
	// Now returns the current time (request timestamps). Default: time.Now.
	Now func() time.Time
}

// Client is one node. It is safe for concurrent use; its procedures are
// serialized.
type Client struct {
	db   *bun.DB
	reg  *dbsync.Registry
	cfg  Config
	http *http.Client
	base *url.URL
	log  *slog.Logger
	kind dialect.Kind
	mu   chanMutex
}

// chanMutex is a mutex whose Lock honours a context.
type chanMutex chan struct{}

func (m chanMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m chanMutex) unlock() { <-m }

// New prepares db for sync (oplog.Install: sync tables, capture triggers on
// the pushed tables) and returns a client. Create the application's tables
// before calling New. The client works on a copy of reg completed from the
// database catalog ([Client.Registry]); reg itself is not changed.
func New(ctx context.Context, db *bun.DB, reg *dbsync.Registry, cfg *Config) (*Client, error) {
	if cfg == nil || cfg.URL == "" {
		return nil, errors.New("client: Config.URL is required")
	}
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("client: Config.URL %q is not an http(s) URL", cfg.URL)
	}
	kind, err := dialect.Of(db)
	if err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, errors.New("client: nil registry")
	}
	reg = reg.Clone()
	c := &Client{db: db, reg: reg, cfg: *cfg, base: base, kind: kind, mu: make(chanMutex, 1)}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c.log = c.cfg.Logger
	c.http = c.cfg.HTTPClient
	if c.http == nil {
		c.http = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
		}}
	}
	if c.cfg.MaxSyncRounds <= 0 {
		c.cfg.MaxSyncRounds = 5
	}
	if c.cfg.Now == nil {
		c.cfg.Now = time.Now
	}
	if err := oplog.Install(ctx, db, reg, &oplog.InstallOptions{Client: true, Logger: c.log}); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return c, nil
}

// Registry returns the client's tracked tables: a copy of the registry
// given to New, with the foreign keys and unique indexes of the database
// catalog. Treat it as read-only.
func (c *Client) Registry() *dbsync.Registry { return c.reg }

func (c *Client) policy(table string) merge.Policy {
	if p, ok := c.cfg.Policies[table]; ok && p != nil {
		return p
	}
	if c.cfg.DefaultPolicy != nil {
		return c.cfg.DefaultPolicy
	}
	return merge.Default
}

func (c *Client) emit(ctx context.Context, e dbsync.Event, start time.Time) {
	if c.cfg.OnEvent == nil {
		return
	}
	e.Side = "client"
	e.Duration = time.Since(start)
	c.cfg.OnEvent(ctx, e)
}

func (c *Client) progress(p dbsync.Progress) {
	if c.cfg.OnProgress != nil {
		c.cfg.OnProgress(p)
	}
}

// node returns the node this client registered as (the newest one).
func (c *Client) node(ctx context.Context, db bun.IDB) (*models.Node, error) {
	var n models.Node
	err := db.NewSelect().Model(&n).OrderExpr("node_id DESC").Limit(1).Scan(ctx)
	if isNoRows(err) {
		return nil, dbsync.ErrNotRegistered
	}
	if err != nil {
		return nil, fmt.Errorf("load node: %w", err)
	}
	return &n, nil
}

// latestVersion returns the newest server version the node holds (0 for
// none).
func latestVersion(ctx context.Context, db bun.IDB) (int64, error) {
	var v *int64
	if err := db.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &v); err != nil {
		return 0, fmt.Errorf("latest version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

func versionPtr(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

// request is one HTTP call to the server.
type request struct {
	method   string
	endpoint string
	query    url.Values
	body     []byte
	node     *models.Node // nil: unsigned (register)
	// authorization is sent as the Authorization header (register).
	authorization string
}

// do sends a request and returns the response of a 2xx answer; other
// answers become errors (see decodeError).
func (c *Client) do(ctx context.Context, r *request) (*http.Response, error) {
	u := *c.base
	u.Path += "/" + r.endpoint
	q := ""
	if r.query != nil {
		q = r.query.Encode()
	}
	u.RawQuery = q
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("client: build request: %w", err)
	}
	req.Header.Set(dbsync.HeaderProtocol, strconv.Itoa(dbsync.ProtocolVersion))
	req.Header.Set(dbsync.HeaderSchema, c.reg.Fingerprint())
	req.Header.Set("Accept", "application/json, application/x-ndjson")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.authorization != "" {
		req.Header.Set("Authorization", r.authorization)
	}
	if r.node != nil {
		s := &dbsync.Signed{
			Endpoint:  r.endpoint,
			Query:     q,
			NodeID:    r.node.NodeID,
			Timestamp: c.cfg.Now().UnixMilli(),
			Nonce:     dbsync.NewNonce(),
			Body:      r.body,
		}
		req.Header.Set(dbsync.HeaderNode, strconv.FormatInt(s.NodeID, 10))
		req.Header.Set(dbsync.HeaderTimestamp, strconv.FormatInt(s.Timestamp, 10))
		req.Header.Set(dbsync.HeaderNonce, s.Nonce)
		req.Header.Set(dbsync.HeaderSignature, s.Sign(r.node.Secret))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", dbsync.ErrNetwork, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %s %s: %w", dbsync.ErrNetwork, r.method, r.endpoint, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// decodeError turns an error response into *dbsync.UniqueConstraintError
// or *dbsync.ServerError.
func decodeError(resp *http.Response) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: reading error response %d: %w", dbsync.ErrNetwork, resp.StatusCode, err)
	}
	var body dbsync.ErrorBody
	if err := json.Unmarshal(raw, &body); err != nil || body.Error.Code == "" {
		return fmt.Errorf("%w: status %d with body %.200q", dbsync.ErrBadResponse, resp.StatusCode, raw)
	}
	if body.Error.Code == dbsync.CodeUniqueConflict {
		return &dbsync.UniqueConstraintError{Entries: body.Error.Entries}
	}
	return &dbsync.ServerError{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
}

// readJSON decodes a whole JSON response.
func readJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 64<<20))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: response cut short: %w", dbsync.ErrNetwork, err)
		}
		return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
	}
	return nil
}

func isNoRows(err error) bool { return errors.Is(err, sqlErrNoRows) }
