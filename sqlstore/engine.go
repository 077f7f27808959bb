package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Engine is the database a Store runs on, given to Open:
// sqlite.DSN (package github.com/keyward/keyward/sqlstore/sqlite) or
// postgres.DSN (package github.com/keyward/keyward/sqlstore/postgres).
// Each engine lives in a package of its own, so that a program compiles
// only the driver of the engine it imports: a PostgreSQL service never
// builds SQLite, a SQLite one never builds pgx. Both speak the schema and
// queries of this package; Engine's methods are what Open asks of them.
type Engine interface {
	// Dialect names the SQL the engine speaks: "sqlite" or "postgres".
	// Open refuses any other.
	Dialect() string
	// Open returns the engine's database with its first connection made,
	// so that a database that does not answer fails here with an error
	// that says so. p bounds the pool and its statements.
	Open(ctx context.Context, p Pool) (*sql.DB, error)
	// Listen opens a connection of its own that receives the
	// notifications sent on channels (PostgreSQL's LISTEN), for the change
	// feed. Open calls it only for the "postgres" dialect.
	Listen(ctx context.Context, channels ...string) (Listener, error)
}

// Pool is what an Engine's database is opened with: Options' bounds, their
// defaults applied.
type Pool struct {
	// QueryTimeout bounds each PostgreSQL statement and the opening of a
	// connection (Options.QueryTimeout; zero: DefaultQueryTimeout).
	QueryTimeout time.Duration
	// MaxConns bounds PostgreSQL connections (Options.MaxConns; zero:
	// DefaultMaxConns).
	MaxConns int
}

// Listener is a connection that receives notifications (Engine.Listen).
type Listener interface {
	// Wait returns the next notification's channel and payload, or an
	// error when ctx ends or the connection fails.
	Wait(ctx context.Context) (channel, payload string, err error)
	// Notify sends payload on channel over this connection, behind any
	// notification sent before it.
	Notify(ctx context.Context, channel, payload string) error
	// Close closes the connection.
	Close(ctx context.Context) error
}

// ErrUnknownDSN is returned by Open for a DSN that names no database of its
// engine (sqlite.DSN given a URL of another scheme, say).
var ErrUnknownDSN = errors.New("keyward: sqlstore: unknown DSN scheme; use postgres://…, postgresql://…, sqlite:PATH or a file path")
