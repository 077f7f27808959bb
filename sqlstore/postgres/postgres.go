// Package postgres is sqlstore's PostgreSQL engine (pgx v5), for several
// instances serving one API:
//
//	store, err := sqlstore.Open(ctx, postgres.DSN("postgres://…"), sqlstore.Options{})
//
// A program that imports only this engine never compiles SQLite's driver.
package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/keyward/keyward/sqlstore"
)

// DSN names a PostgreSQL database in pgx's syntax: postgres://… or
// postgresql://… (search_path accepted), or keyword=value pairs. The
// database must exist.
type DSN string

var _ sqlstore.Engine = DSN("")

// Dialect implements sqlstore.Engine: "postgres".
func (DSN) Dialect() string { return "postgres" }

// Open implements sqlstore.Engine. Every statement is bounded by
// p.QueryTimeout whatever its context, and so is opening a connection
// unless the DSN sets connect_timeout; the pool holds at most p.MaxConns
// connections.
func (d DSN) Open(ctx context.Context, p sqlstore.Pool) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(string(d))
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: open postgres: %w", err)
	}
	p.QueryTimeout = cmp.Or(max(p.QueryTimeout, 0), sqlstore.DefaultQueryTimeout) // a zero Pool: sqlstore.Open's defaults
	p.MaxConns = cmp.Or(max(p.MaxConns, 0), sqlstore.DefaultMaxConns)
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = p.QueryTimeout
	}
	cfg.Tracer = statementTimeout(p.QueryTimeout)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(p.MaxConns)
	db.SetMaxIdleConns(p.MaxConns)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "3D000": // invalid_catalog_name
			return nil, fmt.Errorf("keyward: sqlstore: postgres has no such database (create it first, e.g. with createdb): %w", err)
		case pgErr != nil:
			return nil, fmt.Errorf("keyward: sqlstore: postgres refused the connection: %w", err)
		}
		return nil, fmt.Errorf("keyward: sqlstore: postgres does not answer: %w", err)
	}
	return db, nil
}

// statementTimeout is a pgx tracer that gives every PostgreSQL statement a
// deadline of d, unless its context's is earlier. A transaction's own
// deadline cannot interrupt a statement run with another context:
// database/sql waits for the statement before rolling back, so without
// this a statement of the ledger's settle path, whose context has no
// deadline, would wait on a frozen server for good.
type statementTimeout time.Duration

// cancelKey holds the context.CancelFunc of a statement's deadline.
type cancelKey struct{}

// TraceQueryStart implements pgx.QueryTracer.
func (d statementTimeout) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(d))
	return context.WithValue(ctx, cancelKey{}, cancel)
}

// TraceQueryEnd implements pgx.QueryTracer: the statement (or the reading
// of its rows) is over.
func (statementTimeout) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if cancel, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
		cancel()
	}
}

// Listen implements sqlstore.Engine: a connection of its own (not of the
// pool, and without its statement deadline: it waits for notifications)
// listening on channels.
func (d DSN) Listen(ctx context.Context, channels ...string) (sqlstore.Listener, error) {
	conn, err := pgx.Connect(ctx, string(d))
	if err != nil {
		return nil, err
	}
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			_ = conn.Close(context.Background())
			return nil, err
		}
	}
	return listener{conn}, nil
}

// listener is a sqlstore.Listener on one pgx connection.
type listener struct{ conn *pgx.Conn }

func (l listener) Wait(ctx context.Context) (channel, payload string, err error) {
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		return "", "", err
	}
	return n.Channel, n.Payload, nil
}

func (l listener) Notify(ctx context.Context, channel, payload string) error {
	_, err := l.conn.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload)
	return err
}

func (l listener) Close(ctx context.Context) error { return l.conn.Close(ctx) }
