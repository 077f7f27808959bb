package keyward

import (
	"cmp"
	"context"
	"errors"

	"github.com/keyward/keyward/internal/hooks"
)

// observe reports handler h's decision on a request of state st (nil:
// none) and key k (nil: st's) to telemetry, once it is made: err is nil
// (ok) or the failure. Authenticate, Check, Take and Begin each call it
// once, deferred; while nothing listens it returns at once.
func observe(ctx context.Context, st *requestState, h hooks.Handler, k *KeyRecord, err error) {
	if !hooks.Metering() {
		return
	}
	outcome, scope, org := "ok", "", ""
	if e, ok := errors.AsType[*Error](err); ok {
		outcome, scope = cmp.Or(e.Reason, e.Code), e.Header.Get("X-Ratelimit-Scope")
	} else if err != nil {
		outcome = CodeInternal
	}
	if k == nil && st != nil {
		k = st.key
	}
	if k != nil {
		org = k.Org.ID
	}
	hooks.Record(ctx, h, org, outcome, scope)
}
