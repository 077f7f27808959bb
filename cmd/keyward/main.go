// Command keyward manages organizations and API keys, scans files for
// leaked keys, and serves a demo API protected by keyward.
//
//	keyward orgs create --name acme --plan starter
//	keyward keys create --org ORG_ID --name production --permissions transactions:enrich
//	keyward scan .
//	keyward demo
//
// Global flags: --db (env KEYWARD_DB, default ./keyward.db, a SQLite file;
// postgres://… accepted) and --prefix (env KEYWARD_KEY_PREFIX; default the
// database's, which keeps the prefix it was created with, triq_ for a new
// one). Exit status: 0 ok, 1 failure (or, for scan, keys found), 2 usage.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/postgres"
	"github.com/keyward/keyward/sqlstore/sqlite"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ error }

// exitError carries an exit status with no message of its own (scan
// found keys: it has printed them already).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run executes one command line and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &app{stdout: stdout, stderr: stderr}
	root := app.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	printError(stderr, err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// printError writes err on stderr, each line once prefixed "keyward: "
// (keyward's own errors carry the prefix already, also when one wraps
// another, and joined errors hold one per line), with the names of Go
// fields replaced by the flags that set them.
func printError(stderr io.Writer, err error) {
	msg := flagNames.Replace(err.Error())
	for _, line := range strings.Split(msg, "\n") {
		line = strings.ReplaceAll(line, ": keyward: ", ": ")
		for strings.HasPrefix(line, "keyward: ") {
			line = strings.TrimPrefix(line, "keyward: ")
		}
		fmt.Fprintln(stderr, "keyward: "+line)
	}
}

// flagNames turns the Go field names in the library's messages into the
// flags of this command that set the same values.
var flagNames = strings.NewReplacer(
	"set the organization's RatePerMinute", "give the organization a rate (orgs create/update --rate)",
	"the organization's rate", "--rate: rate",
	"the organization's credits", "--credits: credits",
	"(Options.Prefix); leave Prefix empty to use the database's", "(--prefix, env KEYWARD_KEY_PREFIX); leave --prefix out to use the database's",
)

// isCobraUsage recognises cobra's own errors for unknown commands.
func isCobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown shorthand flag") ||
		strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "invalid argument")
}

type app struct {
	stdout, stderr io.Writer
	db             string
	dbTimeout      time.Duration
	prefix         string
	maxKeys        int
	leases         bool // serve: credits from leases (sqlstore.LeaseOptions)
	create         bool // init, serve and demo: withStore may create the database
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "keyward",
		Short:         "Manage API keys, scan for leaked keys, and run a keyward-protected demo API",
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	group(root)
	root.PersistentFlags().StringVar(&a.db, "db", envOr("KEYWARD_DB", "./keyward.db"),
		"database: a SQLite file path (or sqlite:PATH) or postgres://… (env KEYWARD_DB)")
	root.PersistentFlags().Lookup("db").DefValue = redactDSN(root.PersistentFlags().Lookup("db").DefValue) // help shows no password
	root.PersistentFlags().DurationVar(&a.dbTimeout, "db-timeout", sqlstore.DefaultQueryTimeout,
		"longest wait for one PostgreSQL call or transaction; past it the call fails (a charged request: 503)")
	root.PersistentFlags().StringVar(&a.prefix, "prefix", envOr("KEYWARD_KEY_PREFIX", ""),
		"key prefix (env KEYWARD_KEY_PREFIX; default: the database's, kept since it was created, "+sqlstore.DefaultPrefix+" for a new one; another is refused)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{suggestFlag(cmd, err)} })
	root.PersistentFlags().IntVar(&a.maxKeys, "max-keys", manage.DefaultMaxKeys,
		"most working keys an organization may have (every process on one database should agree)")
	root.AddCommand(a.initCommand(), a.orgsCommand(), a.keysCommand(), a.creditsCommand(), a.plansCommand(), a.scanCommand(), a.serveCommand(), a.demoCommand(),
		a.adminCommand())
	return root
}

// suggestFlag adds to cobra's "unknown flag: --nmae" the flags of cmd
// whose names are close ("did you mean --name?").
func suggestFlag(cmd *cobra.Command, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return err
	}
	var close []string
	seen := map[string]bool{}
	visit := func(f *pflag.Flag) {
		if !seen[f.Name] && !f.Hidden && (editDistance(name, f.Name) <= 2 || strings.HasPrefix(f.Name, name)) {
			close = append(close, "--"+f.Name)
		}
		seen[f.Name] = true
	}
	cmd.LocalFlags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	if len(close) == 0 {
		return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
	}
	return fmt.Errorf("%w; did you mean %s?", err, strings.Join(close, " or "))
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// group makes cmd, a command of commands, a usage error (exit 2) when
// called without one of them or with one it does not have ("orgs craete"),
// instead of printing its help and exiting 0.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		if len(argv) == 0 {
			return usageError{fmt.Errorf("%s needs a command: %s (see %s --help)", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())}
		}
		hint := ""
		if s := cmd.SuggestionsFor(argv[0]); len(s) > 0 {
			hint = "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError{fmt.Errorf("unknown command %q for %q%s (its commands: %s)", argv[0], cmd.CommandPath(), hint, strings.Join(names, ", "))}
	}
	return cmd
}

// version is the module version the binary was built from, "(devel)"
// for a build in a working tree, with the VCS revision when Go recorded
// one.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

// args wraps a cobra argument check so that its failure is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// withStore opens the --db database, runs do with it and closes it: the
// one place a command opens the store. It returns do's error, or else
// Close's (which flushes what the store still holds). The database must
// exist unless the command set a.create (init, serve and demo): a
// mistyped --db or a command run in the wrong directory fails, naming the
// database it looked for, instead of making an empty database there.
func (a *app) withStore(ctx context.Context, do func(s *sqlstore.Store) error) error {
	if path, ok := sqlitePath(a.db); ok && !a.create {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no database at %s (--db, env KEYWARD_DB); create one with `keyward init`, or point --db at an existing one", a.dbName())
		}
	}
	if a.dbTimeout <= 0 {
		return usageError{errors.New("--db-timeout must be positive")}
	}
	if a.maxKeys < 1 {
		return usageError{errors.New("--max-keys must be 1 or more")}
	}
	s, err := sqlstore.Open(ctx, engine(a.db), sqlstore.Options{Prefix: a.prefix, QueryTimeout: a.dbTimeout, MaxKeys: a.maxKeys,
		Lease: sqlstore.LeaseOptions{Enabled: a.leases}})
	if err != nil {
		return fmt.Errorf("database %s: %w", a.dbName(), err)
	}
	a.prefix = s.Format().Prefix()
	err = do(s)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// keyFormat is the format of --prefix's keys, for the commands that open
// no database (scan, keys sample): sqlstore.DefaultPrefix without one.
func (a *app) keyFormat() (keyward.KeyFormat, error) {
	f, err := keyward.NewKeyFormat(cmp.Or(a.prefix, sqlstore.DefaultPrefix))
	if err != nil {
		return f, usageError{fmt.Errorf("--prefix: %w", err)}
	}
	return f, nil
}

// engine returns the engine of a --db DSN: PostgreSQL for postgres://… and
// postgresql://…, SQLite otherwise (which refuses a URL of another scheme
// with sqlstore.ErrUnknownDSN). The command keeps both engines.
func engine(dsn string) sqlstore.Engine {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return postgres.DSN(dsn)
	}
	return sqlite.DSN(dsn)
}

// sqlitePath returns the file of a SQLite DSN (see sqlite.DSN), and
// false for PostgreSQL and in-memory databases.
func sqlitePath(dsn string) (string, bool) {
	if strings.Contains(dsn, "://") {
		return "", false
	}
	path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
	path, _, _ = strings.Cut(path, "?")
	if path == "" || strings.HasPrefix(path, ":memory:") {
		return "", false
	}
	return path, true
}

// dbName is the --db database as messages name it: a PostgreSQL URL
// without its password, in the user part or in the query.
func (a *app) dbName() string { return redactDSN(a.db) }

func redactDSN(dsn string) string {
	if !strings.Contains(dsn, "://") {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "the --db database"
	}
	q := u.Query()
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}

// notFound names the database in which id was looked for, when err says
// that it was not found there.
func (a *app) notFound(err error, id string) error {
	switch {
	case errors.Is(err, keyward.ErrKeyNotFound):
		return fmt.Errorf("key %s not found in %s", a.shown(id), a.dbName())
	case errors.Is(err, manage.ErrOrgNotFound):
		return fmt.Errorf("organization %s not found in %s", a.shown(id), a.dbName())
	}
	return err
}

// shown is s as a message may show it: a string that could be a key (a key
// given where an id was expected, a key mistyped) is shown as its hint,
// never whole.
func (a *app) shown(s string) string {
	f, err := a.keyFormat()
	if err == nil && strings.HasPrefix(s, f.Prefix()) && len(s) >= len(f.Prefix())+30 {
		return f.Hint(s) + " (a key, not an id: find its id with keys whois -)"
	}
	return s
}

// initCommand is `keyward init`: the one management command that makes a
// database.
func (a *app) initCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the --db database (or bring its schema up to date); other management commands never create one",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			verb := "is ready"
			if path, ok := sqlitePath(a.db); ok {
				if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
					verb = "created"
				}
			}
			a.create = true
			if err := a.withStore(cmd.Context(), func(*sqlstore.Store) error { return nil }); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "database %s %s\n", a.dbName(), verb)
			return nil
		},
	}
}

// printJSON writes v as one JSON document on stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows under a header, aligned.
func (a *app) table(header []string, rows [][]string) error {
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}
