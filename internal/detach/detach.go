// Package detach gives a context without its parent's cancellation, as
// context.WithoutCancel does, in a value the caller embeds: no allocation.
// keyward settles a call's credits with it, after the client may have gone.
package detach

import (
	"context"
	"errors"
	"time"
)

// Context is Parent without its deadline, cancellation or cause; its
// values are Parent's. Use a pointer to it as the context.Context. The
// zero value has no parent: it is like context.Background.
type Context struct {
	Parent context.Context
}

var _ context.Context = (*Context)(nil)

// Deadline reports no deadline.
func (*Context) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done returns nil: the context is never cancelled.
func (*Context) Done() <-chan struct{} { return nil }

// Err returns nil.
func (*Context) Err() error { return nil }

// Value returns Parent's value for key.
func (c *Context) Value(key any) any {
	if c.Parent == nil {
		return nil
	}
	if _, ok := key.(*int); ok {
		// The context package finds a cancellation cause by a key of type
		// *int; WithoutCancel hides it (and costs an allocation, which
		// other keys, looked up on every ledger call, do not pay).
		return context.WithoutCancel(c.Parent).Value(key)
	}
	return c.Parent.Value(key)
}

// String names the context, for debugging.
func (c *Context) String() string { return "detach.Context" }

// ClientGone reports whether the client of a request whose context is ctx
// went away: ctx was cancelled. A request whose deadline passed still has
// its client waiting, so it is answered (and a call that answered is
// charged).
func ClientGone(ctx context.Context) bool { return errors.Is(ctx.Err(), context.Canceled) }
