package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/spf13/cobra"
)

// negativeArg finds a negative number in pflag's complaint about it.
var negativeArg = regexp.MustCompile(`unknown shorthand flag: '\d' in (-\d+)$`)

// negativeGrant refuses a negative grant: the ledger's grants only add, and
// taking credits back is a change of allocation, not a grant.
func negativeGrant(n string) error {
	return usageError{fmt.Errorf("N is %s: a grant cannot take credits away (grants only add); "+
		"to give an organization fewer credits, lower its allocation: keyward orgs update ORG_ID --credits N", n)}
}

// creditsCommand is `keyward credits`.
func (a *app) creditsCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "credits", Short: "Grant credits"})
	cmd.AddCommand(a.creditsGrantCommand())
	return cmd
}

// creditsGrantCommand is `credits grant`.
func (a *app) creditsGrantCommand() *cobra.Command {
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
			return a.withStore(ctx, func(s *sqlstore.Store) error {
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
			})
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
	return grant
}
