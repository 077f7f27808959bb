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
	"github.com/spf13/cobra"
)

// orgJSON is how an organization is printed with --json.
type orgJSON struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Plan          string `json:"plan"`
	RatePerSecond int64  `json:"ratePerSecond"`
	Burst         int64  `json:"burst"`
	RatePerMinute int64  `json:"ratePerMinute"`
	Concurrency   int64  `json:"concurrency"`
	Credits       int64  `json:"credits"`
	AllowOverage  bool   `json:"allowOverage"`
}

// orgView shows o's effective limits, as the store resolved them from its
// plan table.
func orgView(o keyward.Organization) orgJSON {
	return orgJSON{ID: o.ID, Name: o.Name, Plan: o.Plan, RatePerSecond: o.Limits.RequestsPerSecond, Burst: o.Limits.Burst,
		RatePerMinute: o.Limits.RequestsPerMinute, Concurrency: o.Limits.Concurrency,
		Credits: o.Limits.MonthlyCredits, AllowOverage: o.AllowOverage}
}

// limitsText shows an organization's (or plan's) rate limits.
func limitsText(perSecond, burst, perMinute, concurrency int64) string {
	if perMinute == 0 {
		return "custom"
	}
	return fmt.Sprintf("%d/s (burst %d), %d/min, %d in flight", perSecond, burst, perMinute, concurrency)
}

// limitFlags are the --rps, --burst and --concurrency flags of orgs create
// and update and plans set: a per-second rate, the bucket's capacity and
// an in-flight cap (0: the plan's, or derived).
type limitFlags struct{ perSecond, burst, concurrency int64 }

func (l *limitFlags) add(cmd *cobra.Command, of string) {
	cmd.Flags().Int64Var(&l.perSecond, "rps", 0, "requests per second, the token bucket's sustained rate ("+of+"; 0: derived from the per-minute rate)")
	cmd.Flags().Int64Var(&l.burst, "burst", 0, "requests that may start at once, the token bucket's capacity ("+of+"; 0: the larger of the per-second rate and the in-flight cap)")
	cmd.Flags().Int64Var(&l.concurrency, "concurrency", 0, "requests in flight at once ("+of+"; 0: the per-second rate, at least 2)")
}

func (l limitFlags) check() error {
	if err := keyward.CheckLimits(keyward.Limits{RequestsPerSecond: l.perSecond, Burst: l.burst, Concurrency: l.concurrency}); err != nil {
		return flagError("--rps/--burst/--concurrency", err)
	}
	return nil
}

// flagError is a usage error: flag's value broke keyward's rule err.
func flagError(flag string, err error) error {
	return usageError{fmt.Errorf("%s: %s", flag, strings.TrimPrefix(err.Error(), "keyward: "))}
}

// splitPermissions reads a --permissions list: comma-separated, blanks
// ignored.
func splitPermissions(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
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

// parseRate reads "600/min", "600" or "600/m".
func parseRate(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, unit, _ := strings.Cut(s, "/")
	switch unit {
	case "", "m", "min", "minute":
	default:
		return 0, usageError{fmt.Errorf("--rate %q: want N/min", s)}
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v <= 0 {
		return 0, usageError{fmt.Errorf("--rate %q: want a positive number of requests per minute", s)}
	}
	if err := manage.CheckRatePerMinute(v); err != nil {
		return 0, flagError("--rate", err)
	}
	return v, nil
}

func (a *app) orgsCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "orgs", Short: "Create, list, show, update and delete organizations"})
	var (
		name, plan, rate string
		credits          int64
		overage, asJSON  bool
		limits           limitFlags
	)
	create := &cobra.Command{
		Use:   "create --name NAME [--plan PLAN] [--rate N/min] [--rps N] [--burst N] [--concurrency N] [--credits N] [--overage]",
		Short: "Create an organization",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usageError{errors.New("--name is required")}
			}
			r, err := parseRate(rate)
			if err != nil {
				return err
			}
			if err := checkCreditsFlag("--credits", credits); err != nil {
				return err
			}
			if err := limits.check(); err != nil {
				return err
			}
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			spec := manage.OrgSpec{Name: name, Plan: plan, RatePerMinute: r, RatePerSecond: limits.perSecond,
				Burst: limits.burst, Concurrency: limits.concurrency, MonthlyCredits: credits, AllowOverage: overage}
			// The store checks this too; checked here, against the
			// database's plan table, a mistake is a usage error.
			if _, err := manage.NewOrg("", spec, s.Plans()); err != nil {
				return usageError{err}
			}
			o, err := s.CreateOrg(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(orgView(o))
			}
			v := orgView(o)
			fmt.Fprintf(a.stdout, "created organization %s (%s): plan %s, %s, %d credits/month\n",
				v.ID, v.Name, v.Plan, limitsText(v.RatePerSecond, v.Burst, v.RatePerMinute, v.Concurrency), v.Credits)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "organization name (required)")
	create.Flags().StringVar(&plan, "plan", "free", planFlagUsage)
	create.Flags().StringVar(&rate, "rate", "", "custom rate limit, N/min (overrides the plan's)")
	limits.add(create, "overrides the plan's")
	create.Flags().Int64Var(&credits, "credits", 0, "custom monthly credits (overrides the plan's)")
	create.Flags().BoolVar(&overage, "overage", false, "let calls go on when credits run out")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List organizations",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			orgs, err := s.ListOrgs(cmd.Context())
			if err != nil {
				return err
			}
			views := make([]orgJSON, 0, len(orgs))
			rows := make([][]string, 0, len(orgs))
			for _, o := range orgs {
				v := orgView(o)
				views = append(views, v)
				rows = append(rows, []string{v.ID, v.Name, v.Plan, strconv.FormatInt(v.RatePerMinute, 10) + "/min",
					strconv.FormatInt(v.Credits, 10), strconv.FormatBool(v.AllowOverage)})
			}
			if listJSON {
				return a.printJSON(views)
			}
			return a.table([]string{"ID", "NAME", "PLAN", "RATE", "CREDITS/MONTH", "OVERAGE"}, rows)
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	cmd.AddCommand(create, list, a.orgsShowCommand(), a.orgsUpdateCommand(), a.orgsDeleteCommand())
	return cmd
}

// keyJSON is how a key is printed with --json. Key is set only when the
// key was just made.
type keyJSON struct {
	ID          string     `json:"id"`
	Key         string     `json:"key,omitempty"`
	Hint        string     `json:"hint"`
	OrgID       string     `json:"orgId"`
	Name        string     `json:"name"`
	Environment string     `json:"environment"`
	Permissions []string   `json:"permissions"`
	CreatedAt   time.Time  `json:"createdAt"`
	ExpiresAt   *time.Time `json:"expiresAt,omitempty"`
	RevokedAt   *time.Time `json:"revokedAt,omitempty"`
	LastUsedAt  *time.Time `json:"lastUsedAt,omitempty"`
	Status      string     `json:"status"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func keyView(r keyward.KeyRecord, now time.Time) keyJSON {
	status := manage.Status(&r, now)
	perms := r.Permissions
	if perms == nil {
		perms = []string{}
	}
	return keyJSON{ID: r.ID, Hint: r.Hint, OrgID: r.Org.ID, Name: r.Name, Environment: string(r.Environment),
		Permissions: perms, CreatedAt: r.CreatedAt, ExpiresAt: timePtr(r.ExpiresAt), RevokedAt: timePtr(r.RevokedAt),
		LastUsedAt: timePtr(r.LastUsedAt), Status: status}
}

func (a *app) printNewKey(ck manage.CreatedKey, asJSON bool, verb string) error {
	v := keyView(ck.Record, time.Now())
	v.Key = ck.Key
	if asJSON {
		return a.printJSON(v)
	}
	fmt.Fprintf(a.stdout, "%s key %s (%s) for organization %s\n\n    %s\n\nThis is the only time the key is shown: store it now.\n",
		verb, v.ID, v.Name, v.OrgID, ck.Key)
	return nil
}

func (a *app) keysCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "keys", Short: "Create, list, show, update, revoke and rotate API keys"})
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
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			ck, err := s.CreateKey(cmd.Context(), manage.KeySpec{OrgID: org, Name: name, Environment: keyward.Environment(env),
				Permissions: permissions, ExpiresIn: expires, RatePerMinute: r})
			if err != nil {
				return a.notFound(err, org)
			}
			a.warnUnknownPermissions(permissions)
			return a.printNewKey(ck, asJSON, "created")
		},
	}
	create.Flags().StringVar(&org, "org", "", "organization id (required)")
	create.Flags().StringVar(&name, "name", "", "key name: production, development, ci, partner… (required)")
	create.Flags().StringVar(&env, "env", "live", "environment: live or test")
	create.Flags().StringVar(&perms, "permissions", "", "comma-separated permissions, e.g. transactions:enrich,categories:read or *")
	durationFlag(create, &expires, "expires", 0, fmt.Sprintf("lifetime, e.g. 30d or 720h; at most %.0fd (default: never expires)", manage.MaxKeyLifetime.Hours()/24))
	create.Flags().StringVar(&rate, "rate", "", "per-key rate limit, N/min (on top of the organization's)")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")

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
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			keys, err := s.ListKeys(cmd.Context(), listOrg, manage.KeyQuery{})
			if err != nil {
				return a.notFound(err, listOrg)
			}
			now := time.Now()
			views := make([]keyJSON, 0, len(keys))
			rows := make([][]string, 0, len(keys))
			for _, k := range keys {
				v := keyView(k, now)
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
		},
	}
	list.Flags().StringVar(&listOrg, "org", "", "organization id (required)")
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var revokeJSON bool
	revoke := &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke a key at once",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.RevokeKey(cmd.Context(), argv[0]); err != nil {
				return a.notFound(err, argv[0])
			}
			if revokeJSON {
				return a.printJSON(map[string]string{"id": argv[0], "status": "revoked"})
			}
			fmt.Fprintf(a.stdout, "revoked key %s\n", argv[0])
			return nil
		},
	}
	revoke.Flags().BoolVar(&revokeJSON, "json", false, "print JSON")

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
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			ck, err := s.RotateKey(cmd.Context(), argv[0], grace)
			if err != nil {
				return a.notFound(err, argv[0])
			}
			return a.printNewKey(ck, rotateJSON, "rotated "+argv[0]+" into")
		},
	}
	durationFlag(rotate, &grace, "grace", 24*time.Hour, fmt.Sprintf("how long the old key keeps working, e.g. 7d or 24h; at most %.0fd", manage.MaxRotationGrace.Hours()/24))
	rotate.Flags().BoolVar(&rotateJSON, "json", false, "print JSON")
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
	cmd.AddCommand(create, list, a.keysShowCommand(), a.keysUpdateCommand(), revoke, rotate, a.keysWhoisCommand(), sample)
	return cmd
}
