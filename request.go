package keyward

import (
	"context"
	"net/http"
	"sync/atomic"
)

// requestState is what keyward keeps for one request between its
// handlers. RequireAPIKey makes it, in one allocation with the request it
// passes on, and puts it in the request's context with context.WithValue,
// so that it is found through any context a foreign middleware wraps
// around it. The other handlers use it only through callerOf (the key, or
// the 500 for a handler without RequireAPIKey in front or with an unusable
// record), headerValue (a header value that costs no allocation; the
// goroutine serving the request sets headers) and newCharge and charge
// (room for the call's Charge, which SetCost finds). Its parts are claimed
// once and never reused.
type requestState struct {
	req  http.Request // the request RequireAPIKey passes on
	key  *KeyRecord
	vals [9]string // header values, claimed in order (nvals so far) by the goroutine serving the request

	room       Charge                 // the first Charge of the request
	lastCharge atomic.Pointer[Charge] // the innermost ChargeCredits' Charge
	roomTaken  atomic.Bool
	nvals      uint8
	shared     bool // made by WithKey: a context, perhaps of many requests
	calls      bool // RequireAPIKey records the call for a CallRecorder (RecordsCalls)
}

type stateKey struct{}

// AttachKey returns a shallow copy of r whose context carries k, as
// RequireAPIKey passes the request on (FromContext finds k). Adapters for
// other routers call it after Authenticator.Authenticate.
func AttachKey(r *http.Request, k *KeyRecord) *http.Request { return attach(r, &requestState{key: k}) }

// attach is AttachKey with the state st, made for k.
func attach(r *http.Request, st *requestState) *http.Request {
	// The copy is made into the state: one allocation for both.
	st.req = *r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	return &st.req
}

// WithKey returns a copy of ctx carrying k, for code that calls the
// handlers' decisions outside RequireAPIKey (tests, jobs). Requests that
// share such a context share nothing else: ChargeCredits' middleware gives
// each its own state (through an adapter, SetCost then needs AttachKey).
func WithKey(ctx context.Context, k *KeyRecord) context.Context {
	return context.WithValue(ctx, stateKey{}, &requestState{key: k, shared: true})
}

// FromContext returns the key RequireAPIKey authenticated for the request,
// with its organization: who is calling. Treat it as read-only: it is
// shared by every request of the key while it is cached.
func FromContext(ctx context.Context) (*KeyRecord, bool) {
	st := stateFrom(ctx)
	if st == nil || st.key == nil {
		return nil, false
	}
	return st.key, true
}

func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// callerOf returns the request's state and the key it carries, or the 500
// that names the misconfiguration: no RequireAPIKey in front of handler,
// or a record without a key id or an organization id.
func callerOf(ctx context.Context, handler string) (*requestState, *KeyRecord, error) {
	st := stateFrom(ctx)
	switch {
	case st == nil || st.key == nil:
		return nil, nil, misconfigured(handler + " needs RequireAPIKey in front of it")
	case st.key.ID == "" || st.key.Org.ID == "":
		return nil, nil, misconfigured(handler + " was given a key record without a key id or an organization id")
	}
	return st, st.key, nil
}

// headerValue returns v as a header map value, []string{v}, taken from the
// state's room while it lasts (st may be nil). Call it from the goroutine
// serving the request, as for the header map it goes into.
func (st *requestState) headerValue(v string) []string {
	if st != nil && !st.shared && int(st.nvals) < len(st.vals) {
		i := st.nvals
		st.nvals++
		st.vals[i] = v
		return st.vals[i : i+1 : i+1]
	}
	return []string{v}
}

// newCharge returns room for a Charge: the state's the first time, a new
// one after that. It becomes the Charge SetCost finds.
func (st *requestState) newCharge() *Charge {
	if st.shared {
		return new(Charge) // not the state's: it may be another request's
	}
	var ch *Charge
	if st.roomTaken.CompareAndSwap(false, true) {
		ch = &st.room
	} else {
		ch = new(Charge)
	}
	st.lastCharge.Store(ch)
	return ch
}

// charge returns the Charge of the innermost ChargeCredits, if any.
func (st *requestState) charge() *Charge {
	if st == nil {
		return nil
	}
	return st.lastCharge.Load()
}
