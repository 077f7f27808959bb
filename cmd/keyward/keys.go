package main

import (
	"bufio"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/spf13/cobra"
)

func (a *app) printNewKey(ck manage.CreatedKey, asJSON bool, verb string) error {
	v := manage.ViewKey(ck.Record, time.Now())
	v.Key = ck.Key
	if asJSON {
		return a.printJSON(v)
	}
	fmt.Fprintf(a.stdout, "%s key %s (%s) for organization %s\n\n    %s\n\nThis is the only time the key is shown: store it now.\n",
		verb, v.ID, v.Name, v.OrgID, ck.Key)
	return nil
}

// keysCommand is `keyward keys`.
func (a *app) keysCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "keys", Short: "Create, list, show, update, revoke and rotate API keys"})
	cmd.AddCommand(a.keysCreateCommand(), a.keysListCommand(), a.keysShowCommand(), a.keysUpdateCommand(), a.keysRevokeCommand(), a.keysRotateCommand(), a.keysWhoisCommand(), a.keysSampleCommand())
	return cmd
}

// keysCreateCommand is `keys create`.
func (a *app) keysCreateCommand() *cobra.Command {
	var (
		org, name, env, perms string
		expires               time.Duration
		rate                  string
		asJSON                bool
	)
	create := &cobra.Command{
		Use:   "create --org ID --name NAME [--env live|test] [--permissions a:b,c:d] [--expires 720h]",
		Short: "Create a key; its plaintext is printed this once",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if org == "" || name == "" {
				return usageError{errors.New("--org and --name are required")}
			}
			r, err := parseRate(rate)
			if err != nil {
				return err
			}
			if err := manage.CheckKeyLifetime(expires); err != nil {
				return flagError("--expires", err)
			}
			permissions := splitPermissions(perms)
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				ck, err := s.CreateKey(cmd.Context(), manage.KeySpec{OrgID: org, Name: name, Environment: keyward.Environment(env),
					Permissions: permissions, ExpiresIn: expires, RatePerMinute: r})
				if err != nil {
					return a.notFound(err, org)
				}
				a.warnUnknownPermissions(permissions)
				return a.printNewKey(ck, asJSON, "created")
			})
		},
	}
	create.Flags().StringVar(&org, "org", "", "organization id (required)")
	create.Flags().StringVar(&name, "name", "", "key name: production, development, ci, partner… (required)")
	create.Flags().StringVar(&env, "env", "live", "environment: live or test")
	create.Flags().StringVar(&perms, "permissions", "", "comma-separated permissions, e.g. transactions:enrich,categories:read or *")
	durationFlag(create, &expires, "expires", 0, fmt.Sprintf("lifetime, e.g. 30d or 720h; at most %.0fd (default: never expires)", manage.MaxKeyLifetime.Hours()/24))
	create.Flags().StringVar(&rate, "rate", "", "per-key rate limit, N/min (on top of the organization's)")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return create
}

// keysListCommand is `keys list`.
func (a *app) keysListCommand() *cobra.Command {
	var listOrg string
	var listJSON bool
	list := &cobra.Command{
		Use:   "list --org ID",
		Short: "List an organization's keys (hints only)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listOrg == "" {
				return usageError{errors.New("--org is required")}
			}
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				keys, err := s.ListKeys(cmd.Context(), listOrg, manage.KeyQuery{})
				if err != nil {
					return a.notFound(err, listOrg)
				}
				now := time.Now()
				views := make([]manage.KeyView, 0, len(keys))
				rows := make([][]string, 0, len(keys))
				for _, k := range keys {
					v := manage.ViewKey(k, now)
					views = append(views, v)
					used := "never"
					if v.LastUsedAt != nil {
						used = v.LastUsedAt.Format(time.RFC3339)
					}
					rows = append(rows, []string{v.ID, v.Name, v.Environment, v.Hint, strings.Join(v.Permissions, ","),
						v.CreatedAt.Format(time.RFC3339), used, v.Status})
				}
				if listJSON {
					return a.printJSON(views)
				}
				return a.table([]string{"ID", "NAME", "ENV", "HINT", "PERMISSIONS", "CREATED", "LAST USED", "STATUS"}, rows)
			})
		},
	}
	list.Flags().StringVar(&listOrg, "org", "", "organization id (required)")
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	return list
}

// keysRevokeCommand is `keys revoke`.
func (a *app) keysRevokeCommand() *cobra.Command {
	var revokeJSON bool
	revoke := &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke a key at once",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				if err := s.RevokeKey(cmd.Context(), argv[0]); err != nil {
					return a.notFound(err, argv[0])
				}
				if revokeJSON {
					return a.printJSON(map[string]string{"id": argv[0], "status": "revoked"})
				}
				fmt.Fprintf(a.stdout, "revoked key %s\n", argv[0])
				return nil
			})
		},
	}
	revoke.Flags().BoolVar(&revokeJSON, "json", false, "print JSON")
	return revoke
}

// keysRotateCommand is `keys rotate`.
func (a *app) keysRotateCommand() *cobra.Command {
	var grace time.Duration
	var rotateJSON bool
	rotate := &cobra.Command{
		Use:   "rotate KEY_ID [--grace 24h]",
		Short: "Make a new key now; the old one keeps working for the grace period",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if grace < 0 {
				return usageError{errors.New("--grace must not be negative")}
			}
			if err := manage.CheckRotationGrace(grace); err != nil {
				return flagError("--grace", err)
			}
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				ck, err := s.RotateKey(cmd.Context(), argv[0], grace)
				if err != nil {
					return a.notFound(err, argv[0])
				}
				return a.printNewKey(ck, rotateJSON, "rotated "+argv[0]+" into")
			})
		},
	}
	durationFlag(rotate, &grace, "grace", 24*time.Hour, fmt.Sprintf("how long the old key keeps working, e.g. 7d or 24h; at most %.0fd", manage.MaxRotationGrace.Hours()/24))
	rotate.Flags().BoolVar(&rotateJSON, "json", false, "print JSON")
	return rotate
}

// keysSampleCommand is `keys sample`.
func (a *app) keysSampleCommand() *cobra.Command {
	var count int
	sample := &cobra.Command{
		Use:   "sample [--count N]",
		Short: "Print N well-formed keys that are stored nowhere (for load tests and scanner checks)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := a.keyFormat()
			if err != nil {
				return err
			}
			if count < 1 || count > 1_000_000 {
				return usageError{errors.New("--count must be 1 to 1,000,000")}
			}
			w := bufio.NewWriter(a.stdout)
			for range count {
				k, err := format.Generate()
				if err != nil {
					return err
				}
				fmt.Fprintln(w, k)
			}
			return w.Flush()
		},
	}
	sample.Flags().IntVar(&count, "count", 1, "how many keys")
	return sample
}

// warnUnknownPermissions warns on stderr of each permission that no route
// of the demo API (keyward serve) requires: most likely a typo, harmless
// if the key is for a service of your own that requires it.
func (a *app) warnUnknownPermissions(perms []string) {
	for _, p := range perms {
		if !slices.Contains(demoPermissions, p) {
			fmt.Fprintf(a.stderr, "keyward: warning: no route of keyward serve's demo API requires %q (they require %s); a service of your own may\n",
				p, strings.Join(demoPermissions[:2], " or "))
		}
	}
}

// keyDetail is `keys show`: a key, its limits and its rotation chain.
type keyDetail struct {
	manage.KeyView
	GraceEndsAt *time.Time `json:"graceEndsAt,omitempty"`
}

// keysShowCommand is `keys show`.
func (a *app) keysShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show KEY_ID",
		Short: "Show a key: status, permissions, rate, expiry, grace end, predecessor and successor (never the key)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				info, err := s.Key(cmd.Context(), "", argv[0])
				if err != nil {
					return a.notFound(err, argv[0])
				}
				now := time.Now()
				d := keyDetail{KeyView: manage.ViewKeyInfo(info, now)}
				if !info.Record.RevokedAt.IsZero() && now.Before(info.Record.RevokedAt) {
					d.GraceEndsAt = &info.Record.RevokedAt
				}
				if asJSON {
					return a.printJSON(d)
				}
				opt := func(t *time.Time, none string) string {
					if t == nil {
						return none
					}
					return t.Format(time.RFC3339)
				}
				rateText := "the organization's"
				if d.RatePerMinute > 0 {
					rateText = strconv.FormatInt(d.RatePerMinute, 10) + "/min"
				}
				return a.table([]string{"FIELD", "VALUE"}, [][]string{
					{"id", d.ID}, {"name", d.Name}, {"organization", d.OrgID}, {"hint", d.Hint},
					{"environment", d.Environment}, {"status", d.Status},
					{"permissions", strings.Join(d.Permissions, ",")}, {"rate", rateText},
					{"created", d.CreatedAt.Format(time.RFC3339)}, {"expires", opt(d.ExpiresAt, "never")},
					{"grace ends", opt(d.GraceEndsAt, "-")}, {"revoked", opt(d.RevokedAt, "-")},
					{"last used", opt(d.LastUsedAt, "never")},
					{"predecessor", orDash(d.Predecessor)}, {"successor", orDash(d.Successor)},
				})
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// keysUpdateCommand is `keys update`.
func (a *app) keysUpdateCommand() *cobra.Command {
	var name, perms, expires string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "update KEY_ID [--name NAME] [--permissions a:b,c:d] [--expires 30d|never]",
		Short: "Change a key's name, permissions or expiry (counted from now); flags not given stay as they are",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			fs := cmd.Flags()
			var c manage.KeyChange
			if fs.Changed("name") {
				c.Name = &name
			}
			if fs.Changed("permissions") {
				p := splitPermissions(perms)
				c.Permissions = &p
			}
			if fs.Changed("expires") {
				var d time.Duration
				if expires != "never" {
					if err := (durationValue{&d}).Set(expires); err != nil {
						return usageError{fmt.Errorf("--expires %q: %w, or never", expires, err)}
					}
					if d <= 0 {
						return usageError{fmt.Errorf("--expires %q: want a positive lifetime, or never", expires)}
					}
				}
				c.ExpiresIn = &d
			}
			if c == (manage.KeyChange{}) {
				return usageError{errors.New("nothing to change: give --name, --permissions or --expires")}
			}
			if err := c.Check(); err != nil {
				return usageError{err}
			}
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				rec, err := s.UpdateKey(cmd.Context(), argv[0], c)
				if err != nil {
					return a.notFound(err, argv[0])
				}
				if c.Permissions != nil {
					a.warnUnknownPermissions(*c.Permissions)
				}
				v := manage.ViewKey(rec, time.Now())
				if asJSON {
					return a.printJSON(v)
				}
				fmt.Fprintf(a.stdout, "updated key %s (%s)\n", v.ID, v.Name)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "key name")
	cmd.Flags().StringVar(&perms, "permissions", "", "comma-separated permissions, replacing the key's")
	cmd.Flags().StringVar(&expires, "expires", "", "new lifetime from now (30d, 720h) or never")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// keysWhoisCommand is `keys whois`.
func (a *app) keysWhoisCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "whois HINT|KEY|-",
		Short: "Find a key by its hint (triq_AbCd…wXyZ) or by the key itself (hashed, never printed; - reads it from stdin)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			q := argv[0]
			if q == "-" {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return usageError{errors.New("whois -: no key on stdin")}
				}
				q = strings.TrimSpace(line)
			}
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				var found []keyward.KeyRecord
				var err error
				what := a.shown(q) // a key, even a mistyped one, is never printed
				if s.Format().Valid(q) {
					rec, err := s.LookupKey(cmd.Context(), keyward.Hash(q))
					if err != nil && !errors.Is(err, keyward.ErrKeyNotFound) {
						return err
					}
					if err == nil {
						found = append(found, *rec)
					}
				} else if found, err = s.KeysByHint(cmd.Context(), q); err != nil {
					return err
				}
				if len(found) == 0 {
					return fmt.Errorf("no key %s in %s", what, a.dbName())
				}
				now := time.Now()
				views := make([]manage.KeyView, 0, len(found))
				rows := make([][]string, 0, len(found))
				for _, k := range found {
					v := manage.ViewKey(k, now)
					views = append(views, v)
					rows = append(rows, []string{v.ID, v.OrgID, k.Org.Name, v.Name, v.Environment, v.Hint, v.Status})
				}
				if asJSON {
					return a.printJSON(views)
				}
				return a.table([]string{"ID", "ORG", "ORG NAME", "NAME", "ENV", "HINT", "STATUS"}, rows)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
