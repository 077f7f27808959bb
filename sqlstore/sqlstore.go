// Package sqlstore keeps organizations, keys and credits in SQL: SQLite
// (modernc.org/sqlite, pure Go, nothing to install) for one machine, and
// PostgreSQL (pgx v5) when several instances serve one API. One schema and
// one set of queries serve both.
//
// A Store is a keyward.KeyStore and manage.KeyManager with the same
// contract as memstore (proven by the keywardtest suites). Its change feed
// tells every instance's cache of key changes made by any instance:
// PostgreSQL LISTEN/NOTIFY, within milliseconds; on SQLite a polled change
// table, within Options.PollInterval (250 ms by default). Last-used times
// and per-organization usage counters are recorded in memory and written in
// batches, never once per request.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/usage"
	msqlite "modernc.org/sqlite" // the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

type dialect int

const (
	sqlite dialect = iota
	postgres
)

func (d dialect) String() string {
	if d == postgres {
		return "postgres"
	}
	return "sqlite"
}

// Options configure Open. Every zero value means the default said beside
// it.
type Options struct {
	// Prefix of the keys the store makes and finds. The database keeps
	// the prefix it was created with, and Open refuses a different one
	// (ErrPrefixMismatch): a key made with another prefix would be refused
	// by every service that reads it. Zero: the database's, or for a new
	// database DefaultPrefix. A database made before the prefix was kept
	// takes Prefix on its first Open, or when Prefix is zero the prefix of
	// its newest key (DefaultPrefix when it holds none).
	Prefix string
	// Plans is the plan table organizations may name. Nil: the
	// database's (keyward_plans, seeded with keyward.DefaultPlans() and
	// changed with SetPlan and DeletePlan), shared by every instance and
	// the keyward command. Set, it is authoritative: the database's table
	// is not read, and SetPlan and DeletePlan refuse.
	Plans *keyward.Plans
	// PlanInterval is how often the database's plan table is read again
	// (see Store.Plans for when else it is). Zero: DefaultPlanInterval.
	PlanInterval time.Duration
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// PollInterval is how often the SQLite change feed looks for changes
	// made by other processes. Zero: 250 ms.
	PollInterval time.Duration
	// FlushInterval is how often recorded usage is written. Zero: 5 s.
	FlushInterval time.Duration
	// Logger receives change-feed and flush failures. Nil: slog.Default().
	Logger *slog.Logger
	// Period gives each organization's billing period. Nil:
	// credit.MonthlyUTC.
	Period credit.PeriodFunc
	// ReservationTTL is how long a credit reservation may stay unsettled
	// before it is released. Zero: credit.DefaultReservationTTL.
	ReservationTTL time.Duration
	// IdempotencyTTL is how long an idempotency key is remembered. Zero:
	// credit.DefaultIdempotencyTTL.
	IdempotencyTTL time.Duration
	// MaxConns bounds PostgreSQL connections, so that a slow database
	// cannot make every waiting request open one. Zero: 16. (SQLite always
	// uses one.)
	MaxConns int
	// QueryTimeout bounds how long a frozen or partitioned PostgreSQL can
	// hold a caller: each transaction is rolled back, and each key or
	// organization call fails, at most QueryTimeout after it starts
	// (sooner if its context's deadline is earlier). Each statement is
	// bounded by it too, whatever its context (the credit ledger settles
	// under a context without a deadline, so that a client going away
	// cannot undo a charge), and so is opening a connection unless the
	// DSN sets connect_timeout. SQLite, a local file, waits for its write
	// lock up to its busy timeout (10 s) instead. Zero:
	// DefaultQueryTimeout.
	QueryTimeout time.Duration
	// Lease configures leased credits: calls served from a block of
	// credits this instance holds, written in batches (see LeaseOptions).
	// Zero: off, every call is two transactions.
	Lease LeaseOptions
	// MaxKeys caps each organization's working keys (CreateKey, and
	// RotateKey with a grace, are refused at it with
	// manage.ErrTooManyKeys). Every instance and process on one database
	// should use the same cap. Zero: manage.DefaultMaxKeys.
	MaxKeys int
}

// DefaultPrefix is the key prefix of a new database opened with a zero
// Options.Prefix: Triqai's.
const DefaultPrefix = "triq_"

// ErrPrefixMismatch is returned by Open when Options.Prefix is not the
// prefix the database keeps.
var ErrPrefixMismatch = errors.New("keyward: sqlstore: the database keeps keys of another prefix")

// DefaultQueryTimeout is the QueryTimeout of a zero Options: far above a
// healthy database's milliseconds, far below the 5 minutes a credit
// reservation is held.
const DefaultQueryTimeout = 5 * time.Second

// Store is a keyward.KeyStore and manage.KeyManager on SQLite or
// PostgreSQL. Make one with Open (the zero value is not usable). It is
// safe for concurrent use; Close it when done.
type Store struct {
	db      *sql.DB
	dialect dialect
	dsn     string // for the PostgreSQL listener connection
	format  keyward.KeyFormat
	plans   planState
	now     func() time.Time
	poll    time.Duration
	flush   time.Duration
	logger  *slog.Logger
	period  credit.PeriodFunc
	resTTL  time.Duration
	idemTTL time.Duration
	timeout time.Duration // QueryTimeout
	maxKeys int
	lease   *leaser // nil: leases are off

	mu        sync.Mutex
	watchers  []keyward.Invalidator
	feedStart sync.Once

	usage usageBuffer

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ keyward.KeyStore      = (*Store)(nil)
	_ manage.KeyManager     = (*Store)(nil)
	_ keyward.UsageRecorder = (*Store)(nil)
	_ keyward.CallRecorder  = (*Store)(nil)
	_ usage.Recorder        = (*Store)(nil)
	_ usage.Reader          = (*Store)(nil)
	_ credit.History        = (*Store)(nil)
)

// ErrUnknownDSN is returned by Open for a DSN that names neither SQLite nor
// PostgreSQL.
var ErrUnknownDSN = errors.New("keyward: sqlstore: unknown DSN scheme; use postgres://…, postgresql://…, sqlite:PATH or a file path")

// Open connects to the database that dsn names, applies the schema's
// migrations (under a lock: processes opening one database at once all
// succeed) and returns the Store. dsn is postgres://… or postgresql://…
// for PostgreSQL (pgx syntax, search_path accepted), or sqlite:PATH,
// file:PATH or a plain file path for SQLite (created if missing; WAL, busy
// timeout and foreign keys on).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	var errs []error
	if opts.Prefix != "" {
		if _, err := keyward.NewKeyFormat(opts.Prefix); err != nil {
			errs = append(errs, err)
		}
	}
	for _, o := range []struct {
		name string
		v    int64
	}{
		{"PollInterval", int64(opts.PollInterval)}, {"FlushInterval", int64(opts.FlushInterval)},
		{"ReservationTTL", int64(opts.ReservationTTL)}, {"IdempotencyTTL", int64(opts.IdempotencyTTL)},
		{"MaxConns", int64(opts.MaxConns)}, {"QueryTimeout", int64(opts.QueryTimeout)},
		{"PlanInterval", int64(opts.PlanInterval)}, {"Lease.FlushInterval", int64(opts.Lease.FlushInterval)},
		{"Lease.TTL", int64(opts.Lease.TTL)}, {"Lease.MinAvailable", opts.Lease.MinAvailable}, {"MaxKeys", int64(opts.MaxKeys)},
	} {
		if o.v < 0 {
			errs = append(errs, &keyward.ConfigError{Field: "sqlstore.Options." + o.name, Problem: "is negative"})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Store{
		dsn:    dsn,
		now:    opts.Now,
		poll:   opts.PollInterval,
		flush:  opts.FlushInterval,
		logger: opts.Logger,
		stop:   make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.poll <= 0 {
		s.poll = 250 * time.Millisecond
	}
	if s.flush <= 0 {
		s.flush = 5 * time.Second
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.period, s.resTTL, s.idemTTL = opts.Period, opts.ReservationTTL, opts.IdempotencyTTL
	if s.period == nil {
		s.period = credit.MonthlyUTC
	}
	if s.resTTL <= 0 {
		s.resTTL = credit.DefaultReservationTTL
	}
	if s.idemTTL <= 0 {
		s.idemTTL = credit.DefaultIdempotencyTTL
	}
	s.timeout = opts.QueryTimeout
	if s.timeout <= 0 {
		s.timeout = DefaultQueryTimeout
	}
	s.maxKeys = opts.MaxKeys
	if s.maxKeys == 0 {
		s.maxKeys = manage.DefaultMaxKeys
	}
	s.usage.init()

	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.dialect = postgres
		var cfg *pgx.ConnConfig
		cfg, err = pgx.ParseConfig(dsn)
		if err == nil {
			if cfg.ConnectTimeout == 0 {
				cfg.ConnectTimeout = s.timeout
			}
			cfg.Tracer = statementTimeout(s.timeout)
			s.db = stdlib.OpenDB(*cfg)
			n := opts.MaxConns
			if n <= 0 {
				n = 16
			}
			s.db.SetMaxOpenConns(n)
			s.db.SetMaxIdleConns(n)
		}
	case strings.Contains(dsn, "://"):
		return nil, ErrUnknownDSN
	default:
		s.dialect = sqlite
		s.db, err = sql.Open("sqlite", sqliteDSN(dsn))
		if err == nil {
			// One connection: this process's writers queue in the pool
			// instead of spinning in SQLite's busy handler (which sleeps up
			// to 100 ms a try and starves under contention). Other
			// processes still wait up to the busy timeout.
			s.db.SetMaxOpenConns(1)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("keyward: sqlstore: open %s: %w", s.dialect, err)
	}
	if err := s.firstPing(ctx); err != nil {
		_ = s.db.Close()
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "3D000": // invalid_catalog_name
			return nil, fmt.Errorf("keyward: sqlstore: postgres has no such database (create it first, e.g. with createdb): %w", err)
		case pgErr != nil:
			return nil, fmt.Errorf("keyward: sqlstore: postgres refused the connection: %w", err)
		}
		return nil, fmt.Errorf("keyward: sqlstore: %s does not answer: %w", s.dialect, err)
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	if s.format, err = s.keyPrefix(ctx, opts.Prefix); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	if err := s.initPlans(ctx, opts); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.flushLoop()
	if opts.Lease.Enabled {
		s.lease = newLeaser(s, opts.Lease)
		s.wg.Add(1)
		go s.lease.flushLoop()
	}
	return s, nil
}

// keyPrefix returns the format of the database's keys: its stored prefix,
// which want (Options.Prefix) must equal unless it is empty. A database
// that keeps none yet (new, or made before the prefix was kept) stores
// want; or, when want is empty, the prefix of its newest key, else
// DefaultPrefix. The first process to store one wins: the others read it.
func (s *Store) keyPrefix(ctx context.Context, want string) (keyward.KeyFormat, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	adopt := want
	if adopt == "" {
		var hint string
		err := s.db.QueryRowContext(ctx, `SELECT hint FROM keyward_keys ORDER BY created_at DESC, id DESC LIMIT 1`).Scan(&hint)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return keyward.KeyFormat{}, fmt.Errorf("keyward: sqlstore: key prefix: %w", err)
		}
		// A hint starts with the prefix, whose only underscore ends it.
		adopt = DefaultPrefix
		if i := strings.IndexByte(hint, '_'); i > 0 {
			adopt = hint[:i+1]
		}
	}
	var stored string
	_, err := s.db.ExecContext(ctx, `INSERT INTO keyward_settings (name, value) VALUES ('key_prefix', $1) ON CONFLICT (name) DO NOTHING`, adopt)
	if err == nil {
		err = s.db.QueryRowContext(ctx, `SELECT value FROM keyward_settings WHERE name = 'key_prefix'`).Scan(&stored)
	}
	if err != nil {
		return keyward.KeyFormat{}, fmt.Errorf("keyward: sqlstore: key prefix: %w", err)
	}
	if want != "" && want != stored {
		return keyward.KeyFormat{}, fmt.Errorf("%w: its keys start with %q, not %q (Options.Prefix); leave Prefix empty to use the database's", ErrPrefixMismatch, stored, want)
	}
	f, err := keyward.NewKeyFormat(stored)
	if err != nil {
		return keyward.KeyFormat{}, fmt.Errorf("keyward: sqlstore: the database's key prefix %q: %w", stored, err)
	}
	return f, nil
}

// bound gives ctx the store's QueryTimeout on PostgreSQL, unless its
// deadline is earlier. SQLite, a local file, is left to its busy timeout:
// its callers queue for its one connection, and one instance can wait for
// another's write lock for seconds under load without anything being
// wrong.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.dialect == sqlite {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// statementTimeout is a pgx tracer that gives every PostgreSQL statement a
// deadline of d, unless its context's is earlier. A transaction's own
// deadline (bound, in inTx) cannot interrupt a statement run with another
// context: database/sql waits for the statement before rolling back, so
// without this a statement of the ledger's settle path, whose context has
// no deadline, would wait on a frozen server for good.
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

// firstPing opens the first connection. On SQLite, switching a new database to
// WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY at once,
// without its busy handler, to a connection that would otherwise deadlock
// with another one doing the same (several processes opening a new
// database together): such a ping is tried again, for up to the busy
// timeout.
func (s *Store) firstPing(ctx context.Context) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	wait := 5 * time.Millisecond
	for {
		err := s.db.PingContext(ctx)
		var se *msqlite.Error
		if err == nil || s.dialect != sqlite || !errors.As(err, &se) || se.Code()&0xff != sqliteBusy || time.Now().After(deadline) {
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

// sqliteBusyTimeout is how long SQLite waits for a lock (busy_timeout).
const sqliteBusyTimeout = 10 * time.Second

// sqliteDSN turns sqlite:PATH, file:PATH or PATH into a modernc DSN with
// the pragmas keyward needs. _txlock=immediate makes every transaction
// take the write lock when it begins, so that read-then-write transactions
// never fail to upgrade under concurrency.
func sqliteDSN(dsn string) string {
	path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	v, _ := url.ParseQuery(query)
	v.Add("_pragma", "busy_timeout("+strconv.FormatInt(sqliteBusyTimeout.Milliseconds(), 10)+")")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "synchronous(NORMAL)")
	v.Set("_txlock", "immediate")
	return "file:" + path + "?" + v.Encode()
}

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect.String() }

// DB returns the underlying database, for tests and operators' queries.
func (s *Store) DB() *sql.DB { return s.db }

// Format returns the key format of the keys the store makes.
func (s *Store) Format() keyward.KeyFormat { return s.format }

// migrationLockID is the PostgreSQL advisory lock held while migrating.
const migrationLockID = 7_262_541_903

func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	tx, err := s.db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE, the write lock
	if err != nil {
		return fmt.Errorf("keyward: sqlstore: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if s.dialect == postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID); err != nil {
			return fmt.Errorf("keyward: sqlstore: migration lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS keyward_migrations (
		version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("keyward: sqlstore: migrate: %w", err)
	}
	var current int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM keyward_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("keyward: sqlstore: migrate: %w", err)
	}
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.ParseInt(strings.SplitN(base, "_", 2)[0], 10, 64)
		if err != nil {
			return fmt.Errorf("keyward: sqlstore: migration %s: bad name", base)
		}
		if version <= current {
			continue
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		for _, stmt := range splitStatements(s.dialectSQL(string(body))) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("keyward: sqlstore: migration %s: %w", base, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO keyward_migrations (version, applied_at) VALUES ($1, $2)`,
			version, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("keyward: sqlstore: migration %s: %w", base, err)
		}
	}
	return tx.Commit()
}

// dialectSQL fills the few places where the engines' SQL differs:
// {{serial}}, an auto-increment primary key, and {{hex:COLUMN}}, the
// bytes of a TEXT column as lowercase hex.
func (s *Store) dialectSQL(q string) string {
	serial, hex := "INTEGER PRIMARY KEY AUTOINCREMENT", "lower(hex($1))"
	if s.dialect == postgres {
		serial, hex = "BIGSERIAL PRIMARY KEY", "encode(convert_to($1, 'UTF8'), 'hex')"
	}
	return hexPlaceholder.ReplaceAllString(strings.ReplaceAll(q, "{{serial}}", serial), hex)
}

var hexPlaceholder = regexp.MustCompile(`\{\{hex:(\w+)\}\}`)

// splitStatements splits a migration on semicolons that end a line,
// dropping comment lines.
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if stmt := strings.TrimSpace(cur.String()); stmt != ";" {
				out = append(out, strings.TrimSuffix(stmt, ";"))
			}
			cur.Reset()
		}
	}
	if stmt := strings.TrimSpace(cur.String()); stmt != "" {
		out = append(out, stmt)
	}
	return out
}

// Close stops the change feed, writes the usage recorded since the last
// flush and closes the database. It is idempotent.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = s.FlushUsage(ctx)
		if s.lease != nil {
			// Write what the leases spent and give them back.
			err = errors.Join(err, s.lease.flush(ctx, true))
		}
		err = errors.Join(err, s.db.Close())
	})
	return err
}
