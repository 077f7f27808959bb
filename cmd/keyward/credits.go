package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/spf13/cobra"
)

// orgDetail is `orgs show`: the organization, its credits and its keys.
type orgDetail struct {
	orgJSON
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
		orgJSON: orgView(o), Balance: bal.Allocation + bal.Granted - bal.Spent, Reserved: bal.Reserved,
		Leased: bal.Leased, Available: bal.Available, Granted: bal.Granted, Spent: bal.Spent, PeriodEnd: bal.PeriodEnd.UTC(), Keys: len(keys),
	}, nil
}

func (a *app) printOrgDetail(d orgDetail, asJSON bool) error {
	if asJSON {
		return a.printJSON(d)
	}
	return a.table([]string{"FIELD", "VALUE"}, [][]string{
		{"id", d.ID}, {"name", d.Name}, {"plan", d.Plan},
		{"rate limits", limitsText(d.RatePerSecond, d.Burst, d.RatePerMinute, d.Concurrency)},
		{"credits/month", strconv.FormatInt(d.Credits, 10)},
		{"overage", strconv.FormatBool(d.AllowOverage)},
		{"balance", strconv.FormatInt(d.Balance, 10)},
		{"reserved", strconv.FormatInt(d.Reserved, 10)},
		{"leased", strconv.FormatInt(d.Leased, 10)},
		{"available", strconv.FormatInt(d.Available, 10)},
		{"period end", d.PeriodEnd.Format(time.RFC3339)},
		{"keys", strconv.Itoa(d.Keys)},
	})
}

func (a *app) orgsShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ORG_ID",
		Short: "Show an organization: plan, rate limits, balance, reserved, leased, period end, key count",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			d, err := a.orgDetail(cmd.Context(), s, argv[0])
			if err != nil {
				return err
			}
			return a.printOrgDetail(d, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// checkCreditsFlag refuses, as a usage error, a flag's number of credits
// outside 0 to credit.MaxCredits, the most a ledger takes.
func checkCreditsFlag(flag string, n int64) error {
	if n < 0 || n > credit.MaxCredits {
		return usageError{fmt.Errorf("%s must be from 0 to %d (credit.MaxCredits), not %d", flag, credit.MaxCredits, n)}
	}
	return nil
}

// negativeArg finds a negative number in pflag's complaint about it.
var negativeArg = regexp.MustCompile(`unknown shorthand flag: '\d' in (-\d+)$`)

// negativeGrant refuses a negative grant: the ledger's grants only add, and
// taking credits back is a change of allocation, not a grant.
func negativeGrant(n string) error {
	return usageError{fmt.Errorf("N is %s: a grant cannot take credits away (grants only add); "+
		"to give an organization fewer credits, lower its allocation: keyward orgs update ORG_ID --credits N", n)}
}

func (a *app) creditsCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "credits", Short: "Grant credits"})
	var note string
	var asJSON bool
	grant := &cobra.Command{
		Use:   "grant ORG_ID N",
		Short: "Add N credits to the organization's current period (a ledger entry, not an overwrite)",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			n, err := strconv.ParseInt(argv[1], 10, 64)
			if err == nil && n < 0 {
				return negativeGrant(argv[1])
			}
			if err != nil || n < 1 || n > credit.MaxCredits {
				return usageError{fmt.Errorf("N must be a whole number from 1 to %d (credit.MaxCredits), not %q", credit.MaxCredits, argv[1])}
			}
			if err := manage.CheckText("--note", note, manage.MaxNoteLen); err != nil {
				return usageError{err}
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
			if _, err := s.Grant(ctx, o.Account(), n, note); errors.Is(err, credit.ErrInvalidAmount) {
				return fmt.Errorf("granting %d credits would take %s's allocation plus grants this period above %d (credit.MaxCredits): %w",
					n, argv[0], credit.MaxCredits, err)
			} else if err != nil {
				return err
			}
			d, err := a.orgDetail(ctx, s, argv[0])
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(a.stdout, "granted %d credits to %s\n", n, argv[0])
			}
			return a.printOrgDetail(d, asJSON)
		},
	}
	grant.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		// pflag reads "-5" as the shorthand flags 5.
		if m := negativeArg.FindStringSubmatch(err.Error()); m != nil {
			return negativeGrant(m[1])
		}
		return usageError{err}
	})
	grant.Flags().StringVar(&note, "note", "granted with the keyward command", "note kept with the ledger entry")
	grant.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(grant)
	return cmd
}
