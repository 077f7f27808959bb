// Package keywardgin runs keyward's four handlers as gin middleware:
// RequireAPIKey, EnforcePermissions, RateLimitByOrg and ChargeCredits,
// each built from the decision the core exports (keyward.Authenticator,
// PermissionChecker, RateLimiter, Charger). A gin
// server answers exactly as the net/http middleware does: the same
// statuses, headers and bytes, written by the one keyward.ErrorWriter of
// each decision's configuration. keywardtest.RunConformance proves it.
//
// Order them as on net/http: RequireAPIKey first, then EnforcePermissions,
// RateLimitByOrg and ChargeCredits. After RequireAPIKey the caller's key is
// both Key(c) and keyward.FromContext(c.Request.Context()); after
// ChargeCredits, keyward.SetCost(c.Request.Context(), n) sets the call's
// cost. A failure writes keyward's JSON error and aborts the chain.
package keywardgin

import (
	"bufio"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keyward/keyward"
)

// Key returns the key RequireAPIKey authenticated for c's request, with
// its organization, if any: keyward.FromContext(c.Request.Context()). The
// request context is the one place it is kept (gin's c.Set would cost
// every request two allocations, its Keys map, for a copy).
func Key(c *gin.Context) (*keyward.KeyRecord, bool) {
	if c == nil || c.Request == nil {
		return nil, false
	}
	return keyward.FromContext(c.Request.Context())
}

func nilError(what string) error {
	return &keyward.ConfigError{Field: "keywardgin." + what, Problem: "is nil"}
}

// RequireAPIKey returns the middleware that lets through only requests
// with a valid key (a.Authenticate), attaching it to the request context
// (Key reads it); any other request gets a's error and the chain is
// aborted.
func RequireAPIKey(a *keyward.Authenticator) (gin.HandlerFunc, error) {
	if a == nil {
		return nil, nilError("RequireAPIKey's Authenticator")
	}
	return func(c *gin.Context) {
		p, err := a.Authenticate(c.Request)
		if err != nil {
			a.WriteError(c.Writer, c.Request, err)
			c.Abort()
			return
		}
		c.Request = keyward.AttachKey(c.Request, p)
		c.Next()
	}, nil
}

// EnforcePermissions returns the middleware that lets through only
// requests whose key holds the checker's permissions (pc.Check);
// any other request gets pc's error and the chain is aborted.
func EnforcePermissions(pc *keyward.PermissionChecker) (gin.HandlerFunc, error) {
	if pc == nil {
		return nil, nilError("EnforcePermissions' PermissionChecker")
	}
	return func(c *gin.Context) {
		if err := pc.Check(c.Request); err != nil {
			pc.WriteError(c.Writer, c.Request, err)
			c.Abort()
			return
		}
		c.Next()
	}, nil
}

// RateLimitByOrg returns the middleware that holds each organization to
// its plan's limits (l.Check): it sets the rate-limit headers, then goes
// on and gives the request's in-flight slot back when the rest of the
// chain returns (or panics), or writes l's error (429, or 500/503) and
// aborts the chain. Use one RateLimiter for every route so that they
// share the limits.
func RateLimitByOrg(l *keyward.RateLimiter) (gin.HandlerFunc, error) {
	if l == nil {
		return nil, nilError("RateLimitByOrg's RateLimiter")
	}
	return func(c *gin.Context) {
		d, err := l.Check(c.Request)
		d.WriteHeaders(c.Writer.Header())
		if err != nil {
			l.WriteError(c.Writer, c.Request, err)
			c.Abort()
			return
		}
		defer d.Done()
		c.Next()
	}, nil
}

// ChargeCredits returns the middleware that charges each call as cg does
// (its cost or cost function): it reserves the credits before the rest of
// the chain (a refusal is written and aborts the chain) and settles on the
// status gin actually sends: committed on a 2xx, released on any other, on
// a panic (which goes on), on a hijack, and when the client went away
// before anything was sent. A call that sent nothing is answered with
// gin's pending status (200 unless c.Status set another) by this
// middleware, and settled on it.
func ChargeCredits(cg *keyward.Charger) (gin.HandlerFunc, error) {
	if cg == nil {
		return nil, nilError("ChargeCredits' Charger")
	}
	return func(c *gin.Context) {
		ch, err := cg.Begin(c.Request)
		if err != nil {
			cg.WriteError(c.Writer, c.Request, err)
			c.Abort()
			return
		}
		w := &chargeWriter{ResponseWriter: c.Writer, ch: ch}
		c.Writer = w
		defer func() { c.Writer = w.ResponseWriter }()
		ch.Run(c.Next, w.WriteHeaderNow)
	}, nil
}

// chargeWriter is gin's ResponseWriter seen by a Charge. gin's
// WriteHeader only records the status; it is sent by WriteHeaderNow,
// Write, WriteString or Flush, so that is where the Charge is told (with
// the status gin is about to send) before the call goes on.
type chargeWriter struct {
	gin.ResponseWriter
	ch *keyward.Charge
}

func (w *chargeWriter) sending() {
	if !w.ResponseWriter.Written() {
		w.ch.ObserveStatus(w.ResponseWriter.Header(), w.ResponseWriter.Status())
	}
}

// WriteHeaderNow sends the status and headers.
func (w *chargeWriter) WriteHeaderNow() {
	w.sending()
	w.ResponseWriter.WriteHeaderNow()
}

// Write sends the status and headers if not yet sent, then p.
func (w *chargeWriter) Write(p []byte) (int, error) {
	w.sending()
	return w.ResponseWriter.Write(p)
}

// WriteString sends the status and headers if not yet sent, then s.
func (w *chargeWriter) WriteString(s string) (int, error) {
	w.sending()
	return w.ResponseWriter.WriteString(s)
}

// Flush sends the status and headers if not yet sent, and flushes.
func (w *chargeWriter) Flush() {
	w.sending()
	w.ResponseWriter.Flush()
}

// Hijack takes the connection over; the call is then not charged.
func (w *chargeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := w.ResponseWriter.Hijack()
	if err == nil {
		w.ch.ObserveHijack()
	}
	return conn, rw, err
}

// Unwrap returns gin's writer, for http.ResponseController.
func (w *chargeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
