// Package keywardecho runs keyward's four handlers as echo middleware:
// RequireAPIKey, EnforcePermissions, RateLimitByOrg and ChargeCredits,
// each built from the decision the core exports
// (keyward.Authenticator, PermissionChecker, RateLimiter, Charger). An
// echo server answers exactly as the net/http middleware does: the same
// statuses, headers and bytes, written by the one keyward.ErrorWriter of
// each decision's configuration. keywardtest.RunConformance proves it.
//
// Order them as on net/http: RequireAPIKey first, then EnforcePermissions,
// RateLimitByOrg and ChargeCredits. After RequireAPIKey the caller's key is
// both Key(c) and keyward.FromContext(c.Request().Context()); after
// ChargeCredits, keyward.SetCost(c.Request().Context(), n) sets the call's
// cost. A failure writes keyward's JSON error, commits the response and
// stops the chain (the middleware returns nil: there is nothing left for
// echo's error handler to write).
package keywardecho

import (
	"net/http"

	"github.com/keyward/keyward"
	"github.com/labstack/echo/v4"
)

// Key returns the key RequireAPIKey authenticated for c's request, with
// its organization, if any: keyward.FromContext(c.Request().Context()).
func Key(c echo.Context) (*keyward.KeyRecord, bool) {
	if c == nil || c.Request() == nil {
		return nil, false
	}
	return keyward.FromContext(c.Request().Context())
}

func nilError(what string) error {
	return &keyward.ConfigError{Field: "keywardecho." + what, Problem: "is nil"}
}

// RequireAPIKey returns the middleware that lets through only requests
// with a valid key (a.Authenticate), attaching it to the request
// context (Key reads it); any other request gets a's error.
func RequireAPIKey(a *keyward.Authenticator) (echo.MiddlewareFunc, error) {
	if a == nil {
		return nil, nilError("RequireAPIKey's Authenticator")
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			p, err := a.Authenticate(r)
			if err != nil {
				a.WriteError(c.Response(), r, err)
				return nil
			}
			c.SetRequest(keyward.AttachKey(r, p))
			return next(c)
		}
	}, nil
}

// EnforcePermissions returns the middleware that lets through only
// requests whose key holds the checker's permissions (pc.Check);
// any other request gets pc's error.
func EnforcePermissions(pc *keyward.PermissionChecker) (echo.MiddlewareFunc, error) {
	if pc == nil {
		return nil, nilError("EnforcePermissions' PermissionChecker")
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := pc.Check(c.Request()); err != nil {
				pc.WriteError(c.Response(), c.Request(), err)
				return nil
			}
			return next(c)
		}
	}, nil
}

// RateLimitByOrg returns the middleware that holds each organization to
// its plan's limits (l.Check): it sets the rate-limit headers, then goes
// on and gives the request's in-flight slot back when the rest of the
// chain returns (or panics), or writes l's error (429, or 500/503). Use
// one RateLimiter for every route so that they share the limits.
func RateLimitByOrg(l *keyward.RateLimiter) (echo.MiddlewareFunc, error) {
	if l == nil {
		return nil, nilError("RateLimitByOrg's RateLimiter")
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			d, err := l.Check(c.Request())
			d.WriteHeaders(c.Response().Header())
			if err != nil {
				l.WriteError(c.Response(), c.Request(), err)
				return nil
			}
			defer d.Done()
			return next(c)
		}
	}, nil
}

// ChargeCredits returns the middleware that charges each call as cg does
// (its cost or cost function): it reserves the credits before the rest of
// the chain (a refusal is written and stops it) and settles on the status
// echo actually commits: committed on a 2xx, released on any other, on a
// panic (which goes on), on a hijack, and when the client went away before
// anything was sent.
//
// An error returned by the rest of the chain (an echo.HTTPError, say) is
// handed to echo's error handler here, with c.Error, so that the response
// it writes is the status the call settles on; the error is then
// returned, as echo's RequestLogger does with HandleError, and echo's
// default error handler ignores it because the response is committed. A
// custom HTTPErrorHandler must likewise do nothing for a committed
// response. A call that committed nothing is answered 200 here, as
// net/http would answer it.
func ChargeCredits(cg *keyward.Charger) (echo.MiddlewareFunc, error) {
	if cg == nil {
		return nil, nilError("ChargeCredits' Charger")
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			ch, err := cg.Begin(r)
			if err != nil {
				cg.WriteError(c.Response(), r, err)
				return nil
			}
			// echo's Response sends the status when WriteHeader is called,
			// so the core's writer under it sees exactly what is sent.
			res := c.Response()
			orig := res.Writer
			res.Writer = ch.ResponseWriter(orig)
			defer func() { res.Writer = orig }()
			ch.Run(func() {
				if err = next(c); err != nil && !res.Committed {
					c.Error(err)
				}
			}, func() { res.WriteHeader(http.StatusOK) })
			return err
		}
	}, nil
}
