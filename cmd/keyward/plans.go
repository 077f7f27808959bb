package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/keyward/keyward"

	"github.com/keyward/keyward/sqlstore"
	"github.com/spf13/cobra"
)

// planFlagUsage is the help of every --plan flag.
const planFlagUsage = "plan: a name from `keyward plans list` (free, starter, growth, business and enterprise unless changed)"

// planJSON is how a plan is printed with --json.
type planJSON struct {
	Name          string `json:"name"`
	RatePerSecond int64  `json:"ratePerSecond"` // 0: derived from the per-minute rate
	Burst         int64  `json:"burst"`         // 0: derived from the per-second rate and the in-flight cap
	RatePerMinute int64  `json:"ratePerMinute"` // 0: custom, each organization sets its own
	Concurrency   int64  `json:"concurrency"`   // 0: derived from the per-second rate
	Credits       int64  `json:"credits"`
}

func planView(p keyward.Plan) planJSON {
	return planJSON{Name: p.Name, RatePerSecond: p.Limits.RequestsPerSecond, Burst: p.Limits.Burst, RatePerMinute: p.Limits.RequestsPerMinute,
		Concurrency: p.Limits.Concurrency, Credits: p.Limits.MonthlyCredits}
}

// planLimitsText shows a plan's rate limits as an organization on it gets
// them (keyward.Plans.Resolve derives what the plan leaves at zero).
func planLimitsText(p keyward.Plan) string {
	t, err := keyward.NewPlans(p)
	if err != nil {
		return "custom"
	}
	l, err := t.Resolve(keyward.Organization{Plan: p.Name})
	if err != nil {
		return "custom"
	}
	return limitsText(l.RequestsPerSecond, l.Burst, l.RequestsPerMinute, l.Concurrency)
}

// planListJSON is an element of `plans list --json`.
type planListJSON struct {
	planJSON
	Orgs int `json:"orgs"` // organizations on the plan
}

// plansCommand is `keyward plans`: the plan table kept in the database.
func (a *app) plansCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "plans",
		Short: "List, add, change and delete the plans kept in the database",
		Long: "The plan table is data in the --db database, read by this command and by every server that opens it " +
			"(new servers and old pick up a change within seconds), seeded with free, starter, growth, business and " +
			"enterprise. A server whose code passes sqlstore.Options.Plans uses that table instead, and its store refuses changes.",
	})
	cmd.AddCommand(a.plansListCommand(), a.plansSetCommand(), a.plansDeleteCommand())
	return cmd
}

// plansListCommand is `plans list`.
func (a *app) plansListCommand() *cobra.Command {
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the plans, with how many organizations are on each",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withStore(ctx, func(s *sqlstore.Store) error {
				plans, err := s.ListPlans(ctx)
				if err != nil {
					return err
				}
				orgs, err := s.ListOrgs(ctx)
				if err != nil {
					return err
				}
				on := make(map[string]int)
				for _, o := range orgs {
					on[o.Plan]++
				}
				views := make([]planListJSON, 0, len(plans))
				rows := make([][]string, 0, len(plans))
				for _, p := range plans {
					v := planListJSON{planView(p), on[p.Name]}
					views = append(views, v)
					rows = append(rows, []string{v.Name, planLimitsText(p), strconv.FormatInt(v.Credits, 10), strconv.Itoa(v.Orgs)})
				}
				if listJSON {
					return a.printJSON(views)
				}
				return a.table([]string{"NAME", "RATE LIMITS", "CREDITS/MONTH", "ORGS"}, rows)
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	return list
}

// plansSetCommand is `plans set`.
func (a *app) plansSetCommand() *cobra.Command {
	var (
		rate    string
		credits int64
		setJSON bool
		limits  limitFlags
	)
	set := &cobra.Command{
		Use:   "set NAME [--rate N/min|custom] [--rps N] [--burst N] [--concurrency N] [--credits N]",
		Short: "Add a plan, or change one (flags not given stay as they are; a new plan needs --rate)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			fs := cmd.Flags()
			var r int64
			if fs.Changed("rate") && rate != "custom" && rate != "0" {
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
				p, found := s.Plans().Plan(argv[0])
				if !found && !fs.Changed("rate") {
					return usageError{fmt.Errorf("plan %q is new: give its --rate (N/min, or custom: each organization sets its own)", argv[0])}
				}
				p.Name = argv[0]
				if fs.Changed("rate") {
					p.Limits.RequestsPerMinute = r
				}
				if fs.Changed("credits") {
					p.Limits.MonthlyCredits = credits
				}
				if fs.Changed("rps") {
					p.Limits.RequestsPerSecond = limits.perSecond
				}
				if fs.Changed("burst") {
					p.Limits.Burst = limits.burst
				}
				if fs.Changed("concurrency") {
					p.Limits.Concurrency = limits.concurrency
				}
				if err := s.SetPlan(ctx, p); err != nil {
					return err
				}
				if setJSON {
					return a.printJSON(planView(p))
				}
				verb := "added"
				if found {
					verb = "changed"
				}
				fmt.Fprintf(a.stdout, "%s plan %s: %s, %d credits/month\n", verb, p.Name, planLimitsText(p), p.Limits.MonthlyCredits)
				return nil
			})
		},
	}
	set.Flags().StringVar(&rate, "rate", "", "rate limit, N/min; custom (or 0): each organization on the plan sets its own")
	limits.add(set, "for each organization on the plan")
	set.Flags().Int64Var(&credits, "credits", 0, "monthly credits")
	set.Flags().BoolVar(&setJSON, "json", false, "print JSON")
	return set
}

// plansDeleteCommand is `plans delete`.
func (a *app) plansDeleteCommand() *cobra.Command {
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a plan; refused while an organization is on it",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx := cmd.Context()
			return a.withStore(ctx, func(s *sqlstore.Store) error {
				err := s.DeletePlan(ctx, argv[0])
				var inUse *sqlstore.PlanInUseError
				switch {
				case errors.As(err, &inUse):
					return fmt.Errorf("%w (keyward orgs update ORG_ID --plan PLAN)", err)
				case errors.Is(err, sqlstore.ErrPlanNotFound):
					return fmt.Errorf("plan %q not found in %s (see keyward plans list)", argv[0], a.dbName())
				case err != nil:
					return err
				}
				fmt.Fprintf(a.stdout, "deleted plan %s\n", argv[0])
				return nil
			})
		},
	}
	return del
}
