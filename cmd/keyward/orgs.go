package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/spf13/cobra"
)

// orgsCommand is `keyward orgs`.
func (a *app) orgsCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "orgs", Short: "Create, list, show, update and delete organizations"})
	cmd.AddCommand(a.orgsCreateCommand(), a.orgsListCommand(), a.orgsShowCommand(), a.orgsUpdateCommand(), a.orgsDeleteCommand())
	return cmd
}

// limitsText shows an organization's (or plan's) rate limits.
func limitsText(perSecond, burst, perMinute, concurrency int64) string {
	if perMinute == 0 {
		return "custom"
	}
	return fmt.Sprintf("%d/s (burst %d), %d/min, %d in flight", perSecond, burst, perMinute, concurrency)
}

// orgsCreateCommand is `orgs create`.
func (a *app) orgsCreateCommand() *cobra.Command {
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
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
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
					return a.printJSON(manage.ViewOrg(o))
				}
				l := o.Limits
				fmt.Fprintf(a.stdout, "created organization %s (%s): plan %s, %s, %d credits/month\n",
					o.ID, o.Name, o.Plan, limitsText(l.RequestsPerSecond, l.Burst, l.RequestsPerMinute, l.Concurrency), l.MonthlyCredits)
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "organization name (required)")
	create.Flags().StringVar(&plan, "plan", "free", planFlagUsage)
	create.Flags().StringVar(&rate, "rate", "", "custom rate limit, N/min (overrides the plan's)")
	limits.add(create, "overrides the plan's")
	create.Flags().Int64Var(&credits, "credits", 0, "custom monthly credits (overrides the plan's)")
	create.Flags().BoolVar(&overage, "overage", false, "let calls go on when credits run out")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return create
}

// orgsListCommand is `orgs list`.
func (a *app) orgsListCommand() *cobra.Command {
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List organizations",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				orgs, err := s.ListOrgs(cmd.Context())
				if err != nil {
					return err
				}
				views := make([]manage.OrgView, 0, len(orgs))
				rows := make([][]string, 0, len(orgs))
				for _, o := range orgs {
					v := manage.ViewOrg(o)
					views = append(views, v)
					rows = append(rows, []string{v.ID, v.Name, v.Plan, strconv.FormatInt(v.Limits.RequestsPerMinute, 10) + "/min",
						strconv.FormatInt(v.Limits.MonthlyCredits, 10), strconv.FormatBool(v.AllowOverage)})
				}
				if listJSON {
					return a.printJSON(views)
				}
				return a.table([]string{"ID", "NAME", "PLAN", "RATE", "CREDITS/MONTH", "OVERAGE"}, rows)
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	return list
}

// orgDetail is `orgs show`: the organization, its credits and its keys.
type orgDetail struct {
	manage.OrgView
	Balance   int64     `json:"balance"`
	Reserved  int64     `json:"reserved"`
	Leased    int64     `json:"leased"`
	Available int64     `json:"available"`
	Granted   int64     `json:"granted"`
	Spent     int64     `json:"spent"`
	PeriodEnd time.Time `json:"periodEnd"`
	Keys      int       `json:"keys"`
}

func (a *app) orgDetail(ctx context.Context, s *sqlstore.Store, id string) (orgDetail, error) {
	o, err := s.Org(ctx, id)
	if err != nil {
		return orgDetail{}, a.notFound(err, id)
	}
	bal, err := s.Balance(ctx, o.Account())
	if err != nil {
		return orgDetail{}, err
	}
	keys, err := s.ListKeys(ctx, id, manage.KeyQuery{})
	if err != nil {
		return orgDetail{}, err
	}
	return orgDetail{
		OrgView: manage.ViewOrg(o), Balance: credit.Available(bal.Allocation, bal.Granted, bal.Spent, 0), // before reservations
		Reserved: bal.Reserved,
		Leased:   bal.Leased, Available: bal.Available, Granted: bal.Granted, Spent: bal.Spent, PeriodEnd: bal.PeriodEnd.UTC(), Keys: len(keys),
	}, nil
}

func (a *app) printOrgDetail(d orgDetail, asJSON bool) error {
	if asJSON {
		return a.printJSON(d)
	}
	return a.table([]string{"FIELD", "VALUE"}, [][]string{
		{"id", d.ID}, {"name", d.Name}, {"plan", d.Plan},
		{"rate limits", limitsText(d.Limits.RequestsPerSecond, d.Limits.Burst, d.Limits.RequestsPerMinute, d.Limits.Concurrency)},
		{"credits/month", strconv.FormatInt(d.Limits.MonthlyCredits, 10)},
		{"overage", strconv.FormatBool(d.AllowOverage)},
		{"balance", strconv.FormatInt(d.Balance, 10)},
		{"reserved", strconv.FormatInt(d.Reserved, 10)},
		{"leased", strconv.FormatInt(d.Leased, 10)},
		{"available", strconv.FormatInt(d.Available, 10)},
		{"period end", d.PeriodEnd.Format(time.RFC3339)},
		{"keys", strconv.Itoa(d.Keys)},
	})
}

// orgsShowCommand is `orgs show`.
func (a *app) orgsShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ORG_ID",
		Short: "Show an organization: plan, rate limits, balance, reserved, leased, period end, key count",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				d, err := a.orgDetail(cmd.Context(), s, argv[0])
				if err != nil {
					return err
				}
				return a.printOrgDetail(d, asJSON)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

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
			return a.withStore(ctx, func(s *sqlstore.Store) error {
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
			})
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
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				err := s.DeleteOrg(cmd.Context(), argv[0], force)
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
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "revoke the keys that still work, then delete")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
