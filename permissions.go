package keyward

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/internal/perm"
)

// validatePermission checks one permission: "resource:action",
// "resource:*" or "*", where resource and action are non-empty runs of
// letters, digits and _.- (matching is case-sensitive).
func validatePermission(p string) error {
	if !perm.Valid(p) {
		return &ConfigError{Field: "permission " + quoteList([]string{p}), Problem: "is not of the form resource:action, resource:* or *"}
	}
	return nil
}

// ValidatePermissions checks every permission and returns all problems
// joined.
func ValidatePermissions(perms []string) error {
	var errs []error
	for _, p := range perms {
		if err := validatePermission(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PermissionConfig configures EnforcePermissions for one route.
type PermissionConfig struct {
	// Required are the permissions the route needs, each resource:action
	// (wildcards are for keys, not routes). At least one.
	Required []string
	// Errors writes every failure. Nil: the defaults of ErrorWriter.
	Errors *ErrorWriter
}

// PermissionChecker decides whether a request's key holds a route's
// permissions: EnforcePermissions. Its Middleware is the net/http handler;
// adapters for other routers call Check and WriteError. It is immutable
// and safe for concurrent use.
type PermissionChecker struct {
	required []string
	errors   *ErrorWriter
}

// EnforcePermissions checks cfg and returns the PermissionChecker it
// describes, or every problem in cfg joined into one error.
func EnforcePermissions(cfg PermissionConfig) (*PermissionChecker, error) {
	var errs []error
	if len(cfg.Required) == 0 {
		errs = append(errs, &ConfigError{Field: "PermissionConfig.Required", Problem: "is empty; name at least one permission"})
	}
	for _, p := range cfg.Required {
		if strings.Contains(p, "*") {
			errs = append(errs, &ConfigError{Field: "permission " + quoteList([]string{p}), Problem: "is a wildcard; a route requires exact resource:action permissions"})
		} else if err := validatePermission(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &PermissionChecker{required: slices.Clone(cfg.Required), errors: cfg.Errors}, nil
}

// Check returns nil when the key in r's context holds every required
// permission; otherwise an *Error: 403 authorization_error with
// details.required and details.missing, or 500 internal_error when there is
// no key (RequireAPIKey not in front).
func (c *PermissionChecker) Check(r *http.Request) (err error) {
	st, k, err := callerOf(r.Context(), "EnforcePermissions")
	defer func() { observe(r.Context(), st, hooks.Permissions, nil, err) }()
	if err != nil {
		return err
	}
	if len(c.required) == 0 { // never let a zero checker through
		return misconfigured("a PermissionChecker must be made by EnforcePermissions")
	}
	if missing := perm.Missing(k.Permissions, c.required); missing != nil {
		return permissionDenied(slices.Clone(c.required), missing)
	}
	return nil
}

// WriteError writes an error of Check with c's ErrorWriter.
func (c *PermissionChecker) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	c.errors.WriteError(w, r, err)
}

// Middleware runs Check: on success it calls next, on failure it writes the
// error and stops.
func (c *PermissionChecker) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.Check(r); err != nil {
			c.errors.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}
