// Command keyward manages organizations and API keys, scans files for
// leaked keys, and serves a demo API protected by keyward.
//
//	keyward orgs create --name acme --plan starter
//	keyward keys create --org ORG_ID --name production --permissions transactions:enrich
//	keyward scan .
//	keyward demo
//
// Global flags: --db (env KEYWARD_DB, default ./keyward.db, a SQLite file;
// postgres://… accepted) and --prefix (env KEYWARD_KEY_PREFIX, default
// triq_). Exit status: 0 ok, 1 failure (or, for scan, keys found), 2 usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keyward/keyward/sqlstore"
	"github.com/spf13/cobra"
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
	fmt.Fprintln(stderr, "keyward:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

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
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.db, "db", envOr("KEYWARD_DB", "./keyward.db"),
		"database: a SQLite file path (or sqlite:PATH) or postgres://… (env KEYWARD_DB)")
	root.PersistentFlags().DurationVar(&a.dbTimeout, "db-timeout", sqlstore.DefaultQueryTimeout,
		"longest wait for one PostgreSQL call or transaction; past it the call fails (a charged request: 503)")
	root.PersistentFlags().StringVar(&a.prefix, "prefix", envOr("KEYWARD_KEY_PREFIX", "triq_"),
		"key prefix (env KEYWARD_KEY_PREFIX)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.orgsCommand(), a.keysCommand(), a.creditsCommand(), a.scanCommand(), a.serveCommand(), a.demoCommand())
	return root
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

func (a *app) open(ctx context.Context) (*sqlstore.Store, error) {
	if a.dbTimeout <= 0 {
		return nil, usageError{errors.New("--db-timeout must be positive")}
	}
	return sqlstore.Open(ctx, a.db, sqlstore.Options{Prefix: a.prefix, QueryTimeout: a.dbTimeout})
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
