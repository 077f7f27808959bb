// Package sqlstore keeps organizations, keys and credits in SQL: SQLite
// (modernc.org/sqlite, pure Go, nothing to install) for one machine, and
// PostgreSQL (pgx v5) when several instances serve one API. One schema and
// one set of queries serve both. Each engine's driver is a package of its
// own, sqlstore/sqlite and sqlstore/postgres, so that a program compiles
// only the engine it imports:
//
//	store, err := sqlstore.Open(ctx, postgres.DSN(dsn), sqlstore.Options{})
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
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/nilness"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/usage"
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
	// cannot make every waiting request open one. Zero: DefaultMaxConns. (SQLite always
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

// DefaultMaxConns is the MaxConns of a zero Options.
const DefaultMaxConns = 16

// Store is a keyward.KeyStore and manage.KeyManager on SQLite or
// PostgreSQL. Make one with Open (the zero value is not usable). It is
// safe for concurrent use; Close it when done.
type Store struct {
	db      *sql.DB
	dialect dialect
	engine  Engine
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

// Open connects to the database of engine e, applies the schema's
// migrations (under a lock: processes opening one database at once all
// succeed) and returns the Store. e is sqlite.DSN (package
// github.com/keyward/keyward/sqlstore/sqlite) for SQLite: sqlite:PATH,
// file:PATH or a plain file path, created if missing; or postgres.DSN
// (package github.com/keyward/keyward/sqlstore/postgres) for PostgreSQL:
// postgres://… or postgresql://… (search_path accepted).
func Open(ctx context.Context, e Engine, opts Options) (*Store, error) {
	if err := checkOptions(e, opts); err != nil {
		return nil, err
	}
	s := newStore(e, opts)
	n := opts.MaxConns
	if n <= 0 {
		n = DefaultMaxConns
	}
	var err error
	if s.db, err = e.Open(ctx, Pool{QueryTimeout: s.timeout, MaxConns: n}); err != nil {
		return nil, err
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

// checkOptions returns every problem of Open's arguments at once.
func checkOptions(e Engine, opts Options) error {
	var errs []error
	if nilness.Is(e) {
		errs = append(errs, &keyward.ConfigError{Field: "sqlstore.Open's engine", Problem: "is nil (use sqlite.DSN or postgres.DSN)"})
	} else if d := e.Dialect(); d != sqlite.String() && d != postgres.String() {
		errs = append(errs, &keyward.ConfigError{Field: "sqlstore.Open's engine", Problem: fmt.Sprintf("speaks %q, neither sqlite nor postgres", d)})
	}
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
	return errors.Join(errs...)
}

// newStore returns the Store of a valid engine and opts, every default
// applied and no database opened yet.
func newStore(e Engine, opts Options) *Store {
	s := &Store{
		engine:  e,
		dialect: sqlite,
		now:     opts.Now,
		poll:    cmp.Or(opts.PollInterval, 250*time.Millisecond),
		flush:   cmp.Or(opts.FlushInterval, 5*time.Second),
		logger:  cmp.Or(opts.Logger, slog.Default()),
		period:  opts.Period,
		resTTL:  cmp.Or(opts.ReservationTTL, credit.DefaultReservationTTL),
		idemTTL: cmp.Or(opts.IdempotencyTTL, credit.DefaultIdempotencyTTL),
		timeout: cmp.Or(opts.QueryTimeout, DefaultQueryTimeout),
		maxKeys: cmp.Or(opts.MaxKeys, manage.DefaultMaxKeys),
		stop:    make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.period == nil {
		s.period = credit.MonthlyUTC
	}
	if e.Dialect() == postgres.String() {
		s.dialect = postgres
	}
	s.usage.init()
	return s
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

// inTx runs f in a transaction, committing if it returns nil. On
// PostgreSQL the transaction is bounded by the store's QueryTimeout (see
// bound): past it, it is rolled back and f's next statement fails.
func (s *Store) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// wrap leaves keyward's sentinels as they are and prefixes anything else.
func wrap(op string, err error) error {
	switch {
	case errors.Is(err, keyward.ErrKeyNotFound), errors.Is(err, manage.ErrOrgNotFound), errors.Is(err, manage.ErrKeyRevoked),
		errors.Is(err, manage.ErrKeyRotated), errors.Is(err, manage.ErrOrgHasLiveKeys), errors.Is(err, manage.ErrKeyExpired),
		errors.Is(err, manage.ErrTooManyKeys):
		return err
	}
	return fmt.Errorf("keyward: sqlstore: %s: %w", op, err)
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
