package keyward

import (
	"context"
	"net/http"
	"time"

	"github.com/keyward/keyward/internal/statuswriter"
)

// CallRecorder is an AuthConfig.Usage told of each call RequireAPIKey let
// through, once the handlers after it returned: ctx is the call's (its
// Charge, if any, has settled: ChargeFromContext), sent the first final
// status they sent (0: none). It runs on the request path: it must not
// block or do I/O. usage.Counter and sqlstore.Store count calls so.
type CallRecorder interface {
	RecordCall(ctx context.Context, k *KeyRecord, sent int, t time.Time)
}

// serve passes r on to next with k attached and, for a CallRecorder,
// watches what next sends and then tells it of the call. The watch is
// made with the request's state, in one allocation.
func (a *Authenticator) serve(next http.Handler, w http.ResponseWriter, r *http.Request, k *KeyRecord) {
	if a.calls == nil {
		next.ServeHTTP(w, AttachKey(r, k))
		return
	}
	rs := &struct {
		st   requestState
		call statuswriter.Watch
	}{st: requestState{key: k}}
	rs.st.calls = true
	r = attach(r, &rs.st)
	next.ServeHTTP(rs.call.Watch(w), r)
	a.calls.RecordCall(r.Context(), k, rs.call.Status, a.now())
}

// RecordsCalls reports whether the RequireAPIKey in front of ctx's call
// records it (its AuthConfig.Usage is a CallRecorder): a middleware that
// records calls (usage.Middleware) then does not, so none counts twice.
func RecordsCalls(ctx context.Context) bool {
	st := stateFrom(ctx)
	return st != nil && st.calls
}
