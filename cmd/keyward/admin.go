package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/admin"
	"github.com/spf13/cobra"
)

// adminCommand is `keyward admin`: the admin API's and dashboard's tokens.
func (a *app) adminCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "admin", Short: "Admin tokens for the admin API and dashboard (keyward serve --admin-tokens)"})
	tokens := group(&cobra.Command{Use: "token", Short: "Create admin tokens"})
	var file, name string
	create := &cobra.Command{
		Use:   "create --admin-tokens FILE --name NAME",
		Short: "Create an admin token; it is printed this once, and only its hash is added to FILE",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{errors.New("--admin-tokens FILE is required (env KEYWARD_ADMIN_TOKENS)")}
			}
			token, hint, err := admin.CreateToken(file, name, time.Now())
			if errors.Is(err, admin.ErrBadTokenName) {
				return usageError{fmt.Errorf("--name: %w", err)}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "admin token %q (%s), added to %s\n\n    %s\n\n"+
				"This is the only time the token is shown: store it now. Send it as Authorization: Bearer <token>,\n"+
				"or paste it into the dashboard's sign-in. Remove its line from the file to revoke it.\n", name, hint, file, token)
			return nil
		},
	}
	create.Flags().StringVar(&file, "admin-tokens", envOr("KEYWARD_ADMIN_TOKENS", ""), "the admin token file (env KEYWARD_ADMIN_TOKENS)")
	create.Flags().StringVar(&name, "name", "", "a name for the token: who or what uses it")
	tokens.AddCommand(create)
	cmd.AddCommand(tokens)
	return cmd
}
