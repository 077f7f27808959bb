// Package sqlite is sqlstore's SQLite engine (modernc.org/sqlite: pure Go,
// nothing to install), for one machine:
//
//	store, err := sqlstore.Open(ctx, sqlite.DSN("keyward.db"), sqlstore.Options{})
//
// A program that imports only this engine never compiles PostgreSQL's
// driver.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/sqlstore"
	msqlite "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// DSN names a SQLite database: sqlite:PATH, file:PATH or a plain file
// path, with optional query parameters of modernc.org/sqlite. The file is
// created if missing; WAL, a busy timeout of 10 s and foreign keys are
// on. A URL of another scheme (postgres://…) is refused with
// sqlstore.ErrUnknownDSN.
type DSN string

var _ sqlstore.Engine = DSN("")

// Dialect implements sqlstore.Engine: "sqlite".
func (DSN) Dialect() string { return "sqlite" }

// Open implements sqlstore.Engine. The database has one connection: this
// process's writers queue in the pool instead of spinning in SQLite's busy
// handler (which sleeps up to 100 ms a try and starves under contention).
// Other processes still wait up to the busy timeout.
func (d DSN) Open(ctx context.Context, _ sqlstore.Pool) (*sql.DB, error) {
	if strings.Contains(string(d), "://") {
		return nil, sqlstore.ErrUnknownDSN
	}
	db, err := sql.Open("sqlite", driverDSN(string(d)))
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: open sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	if err := firstPing(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("keyward: sqlstore: sqlite does not answer: %w", err)
	}
	return db, nil
}

// Listen implements sqlstore.Engine: SQLite has no notifications (its
// change feed polls a table), so it always fails.
func (DSN) Listen(context.Context, ...string) (sqlstore.Listener, error) {
	return nil, errors.ErrUnsupported
}

// firstPing opens the first connection. Switching a new database to WAL
// takes an exclusive lock, and SQLite answers SQLITE_BUSY at once, without
// its busy handler, to a connection that would otherwise deadlock with
// another one doing the same (several processes opening a new database
// together): such a ping is tried again, for up to the busy timeout.
func firstPing(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	wait := 5 * time.Millisecond
	for {
		err := db.PingContext(ctx)
		var se *msqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqliteBusy || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// sqliteBusy is SQLITE_BUSY, the primary result code of a locked database.
const sqliteBusy = 5

// busyTimeout is how long SQLite waits for a lock (busy_timeout).
const busyTimeout = 10 * time.Second

// driverDSN turns sqlite:PATH, file:PATH or PATH into a modernc DSN with
// the pragmas keyward needs. _txlock=immediate makes every transaction
// take the write lock when it begins, so that read-then-write transactions
// never fail to upgrade under concurrency.
func driverDSN(dsn string) string {
	path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	v, _ := url.ParseQuery(query)
	v.Add("_pragma", "busy_timeout("+strconv.FormatInt(busyTimeout.Milliseconds(), 10)+")")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "synchronous(NORMAL)")
	v.Set("_txlock", "immediate")
	return "file:" + path + "?" + v.Encode()
}
