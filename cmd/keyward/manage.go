package main

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/spf13/cobra"
)

// orgsUpdateCommand is `orgs update`: the flags given change, the others
// stay.
func (a *app) orgsUpdateCommand() *cobra.Command {
	var (
		name, plan, rate string
		credits          int64
		overage, asJSON  bool
		limits           limitFlags
	)
	cmd := &cobra.Command{
		Use:   "update ORG_ID [--name NAME] [--plan PLAN] [--rate N/min] [--rps N] [--burst N] [--concurrency N] [--credits N] [--overage=true|false]",
		Short: "Change an organization's name, plan, rate limits, monthly credits or overage; flags not given stay as they are",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			fs := cmd.Flags()
			if fs.NFlag() == 0 || (fs.NFlag() == 1 && fs.Changed("json")) {
				return usageError{errors.New("nothing to change: give --name, --plan, --rate, --rps, --burst, --concurrency, --credits or --overage")}
			}
			var r int64
			if fs.Changed("rate") {
				var err error
				if r, err = parseRate(rate); err != nil {
					return err
				}
			}
			if err := checkCreditsFlag("--credits", credits); err != nil {
				return err
			}
			if err := limits.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			o, err := s.Org(ctx, argv[0])
			if err != nil {
				return a.notFound(err, argv[0])
			}
			if fs.Changed("name") {
				o.Name = name
			}
			if fs.Changed("plan") {
				o.Plan = plan
			}
			if fs.Changed("rate") {
				o.RatePerMinute = r
			}
			if fs.Changed("rps") {
				o.RatePerSecond = limits.perSecond
			}
			if fs.Changed("burst") {
				o.Burst = limits.burst
			}
			if fs.Changed("concurrency") {
				o.Concurrency = limits.concurrency
			}
			if fs.Changed("credits") {
				o.MonthlyCredits = credits
			}
			if fs.Changed("overage") {
				o.AllowOverage = overage
			}
			err = manage.CheckOrg(o, s.Plans())
			if fs.Changed("name") && err == nil {
				err = manage.CheckOrgName(name)
			}
			if err != nil {
				return usageError{err}
			}
			if err := s.UpdateOrg(ctx, o); err != nil {
				return a.notFound(err, argv[0])
			}
			d, err := a.orgDetail(ctx, s, argv[0])
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(a.stdout, "updated organization %s\n", argv[0])
			}
			return a.printOrgDetail(d, asJSON)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "organization name")
	cmd.Flags().StringVar(&plan, "plan", "", planFlagUsage)
	cmd.Flags().StringVar(&rate, "rate", "", "custom rate limit, N/min (overrides the plan's)")
	limits.add(cmd, "overrides the plan's; 0: the plan's")
	cmd.Flags().Int64Var(&credits, "credits", 0, "custom monthly credits (overrides the plan's; 0: the plan's)")
	cmd.Flags().BoolVar(&overage, "overage", false, "let calls go on when credits run out")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// orgsDeleteCommand is `orgs delete`.
func (a *app) orgsDeleteCommand() *cobra.Command {
	var force, asJSON bool
	cmd := &cobra.Command{
		Use:   "delete ORG_ID [--force]",
		Short: "Delete an organization and its keys; refused while a key still works, unless --force (which deletes them with it)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			err = s.DeleteOrg(cmd.Context(), argv[0], force)
			if errors.Is(err, manage.ErrOrgHasLiveKeys) {
				return fmt.Errorf("organization %s not deleted: %w (--force revokes and deletes them)", argv[0], err)
			}
			if err != nil {
				return a.notFound(err, argv[0])
			}
			if asJSON {
				return a.printJSON(map[string]string{"id": argv[0], "status": "deleted"})
			}
			fmt.Fprintf(a.stdout, "deleted organization %s and its keys\n", argv[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "revoke the keys that still work, then delete")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// keyDetail is `keys show`: a key, its limits and its rotation chain.
type keyDetail struct {
	keyJSON
	RatePerMinute int64      `json:"ratePerMinute"`
	GraceEndsAt   *time.Time `json:"graceEndsAt,omitempty"`
	Predecessor   string     `json:"predecessor,omitempty"`
	Successor     string     `json:"successor,omitempty"`
}

func (a *app) keysShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show KEY_ID",
		Short: "Show a key: status, permissions, rate, expiry, grace end, predecessor and successor (never the key)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			info, err := s.Key(cmd.Context(), "", argv[0])
			if err != nil {
				return a.notFound(err, argv[0])
			}
			now := time.Now()
			d := keyDetail{keyJSON: keyView(info.Record, now), RatePerMinute: info.Record.RatePerMinute,
				Predecessor: info.Predecessor, Successor: info.Successor}
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
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			rec, err := s.UpdateKey(cmd.Context(), argv[0], c)
			if err != nil {
				return a.notFound(err, argv[0])
			}
			if c.Permissions != nil {
				a.warnUnknownPermissions(*c.Permissions)
			}
			v := keyView(rec, time.Now())
			if asJSON {
				return a.printJSON(v)
			}
			fmt.Fprintf(a.stdout, "updated key %s (%s)\n", v.ID, v.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "key name")
	cmd.Flags().StringVar(&perms, "permissions", "", "comma-separated permissions, replacing the key's")
	cmd.Flags().StringVar(&expires, "expires", "", "new lifetime from now (30d, 720h) or never")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

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
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			var found []keyward.KeyRecord
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
			views := make([]keyJSON, 0, len(found))
			rows := make([][]string, 0, len(found))
			for _, k := range found {
				v := keyView(k, now)
				views = append(views, v)
				rows = append(rows, []string{v.ID, v.OrgID, k.Org.Name, v.Name, v.Environment, v.Hint, v.Status})
			}
			if asJSON {
				return a.printJSON(views)
			}
			return a.table([]string{"ID", "ORG", "ORG NAME", "NAME", "ENV", "HINT", "STATUS"}, rows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
