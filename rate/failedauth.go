package rate

import (
	"errors"
	"hash/maphash"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// FailedAuthScope is the X-RateLimit-Scope and details.scope of a request
// refused by FailedAuth.
const FailedAuthScope Scope = "auth"

// Defaults of FailedAuth: a client that mistypes its key a few times is
// not held up, one that tries keys by the thousand gets one try a second.
const (
	DefaultFailedAuthPerMinute = 60
	DefaultFailedAuthBurst     = 10
)

// DefaultIPv6Prefix is FailedAuth.IPv6Prefix's default: the clients of
// one /64 share a budget.
const DefaultIPv6Prefix = 64

// FailedAuth throttles, per client, requests whose API key is missing,
// malformed or unknown (keyward.AuthConfig.FailedAuth): each counts
// against the client's budget, a token bucket of PerMinute a minute and
// Burst at once, and a client over it is refused before any key lookup.
// The client is the request's remote address; behind a proxy listed in
// TrustedProxies, the address that proxy reports in ForwardedHeader, which
// is never read otherwise. The addresses of one IPv6 network (a /64 by
// default, IPv6Prefix) are one client: one subscriber typically holds a
// whole /64. Budgets are kept in this process. Make one with new or a literal, and share it between
// authenticators to share the budgets; it is safe for concurrent use.
type FailedAuth struct {
	// PerMinute and Burst size each client's budget. Zero:
	// DefaultFailedAuthPerMinute and DefaultFailedAuthBurst. Check refuses
	// either above 10^9; changed past that after Check, they count as 10^9.
	PerMinute, Burst int64
	// TrustedProxies are the proxies whose word on the client's address
	// is taken: a request from one of them is the client's that its
	// ForwardedHeader names, right to left, past every trusted address.
	TrustedProxies []netip.Prefix
	// ForwardedHeader is the header your proxies write the client's
	// address to: "X-Forwarded-For" or "Forwarded" (RFC 7239), in any
	// case. Zero: "X-Forwarded-For". Only that one is read: a proxy that
	// appends to one passes the other on as the client sent it, and a
	// client could then name itself anew on each request. Behind proxies
	// that write only Forwarded, set it: otherwise every client is the
	// proxy, and shares one budget.
	ForwardedHeader string
	// IPv6Prefix is the length of the IPv6 networks that are each one
	// client, 1 to 128 (128: every address its own). Zero:
	// DefaultIPv6Prefix.
	IPv6Prefix int

	shards [16]clientShard
}

type clientShard struct {
	mu    sync.Mutex
	tat   map[string]int64 // client -> when its budget is whole again, Unix ns
	swept int64
}

// maxClientLen bounds a client name taken from a header: hostile values
// never become long map keys.
const maxClientLen = 64

// maxFailedAuth bounds PerMinute and Burst: a token every 60 ns at most.
const maxFailedAuth = 1_000_000_000

// Check returns an error unless f's budget is in range, PerMinute and
// Burst in 0…10^9 (0: the defaults), ForwardedHeader is one of the two
// and IPv6Prefix is 0…128 (0: the default). A nil f (no throttle) is fine.
func (f *FailedAuth) Check() error {
	switch {
	case f == nil:
	case f.PerMinute < 0 || f.PerMinute > maxFailedAuth || f.Burst < 0 || f.Burst > maxFailedAuth:
		return errors.New("PerMinute and Burst must be 0 (the defaults) to 1000000000")
	case f.ForwardedHeader != "" && !strings.EqualFold(f.ForwardedHeader, xForwardedFor) && !strings.EqualFold(f.ForwardedHeader, forwardedRFC):
		return errors.New(`ForwardedHeader must be "X-Forwarded-For" (the default) or "Forwarded"`)
	case f.IPv6Prefix < 0 || f.IPv6Prefix > 128:
		return errors.New("IPv6Prefix must be 0 (the default, 64) to 128")
	}
	return nil
}

// The headers a proxy may report the client's address in.
const (
	xForwardedFor = "X-Forwarded-For"
	forwardedRFC  = "Forwarded"
)

// budget is f's, by the defaults where zero, and held within Check's
// bounds where f was changed past them (so that interval is never zero).
func (f *FailedAuth) budget() (interval, capacity int64) {
	perMinute, burst := min(f.PerMinute, maxFailedAuth), min(f.Burst, maxFailedAuth)
	if perMinute <= 0 {
		perMinute = DefaultFailedAuthPerMinute
	}
	if burst <= 0 {
		burst = DefaultFailedAuthBurst
	}
	interval = int64(time.Minute) / perMinute
	return interval, burst * interval
}

func (f *FailedAuth) shard(client string) *clientShard {
	return &f.shards[maphash.String(seed, client)%uint64(len(f.shards))]
}

// Wait returns how long client must wait before a request of it is
// considered again; zero when it is within its budget.
func (f *FailedAuth) Wait(client string, now time.Time) time.Duration {
	interval, capacity := f.budget()
	sh := f.shard(client)
	sh.mu.Lock()
	tat := sh.tat[client]
	sh.mu.Unlock()
	return time.Duration(max(tat+interval-capacity-now.UnixNano(), 0))
}

// Fail counts a failed authentication of client at now.
func (f *FailedAuth) Fail(client string, now time.Time) {
	interval, _ := f.budget()
	ns := now.UnixNano()
	sh := f.shard(client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.tat == nil {
		sh.tat = make(map[string]int64)
	}
	if ns-sh.swept > int64(time.Minute) {
		sh.swept = ns
		for c, tat := range sh.tat {
			if tat < ns {
				delete(sh.tat, c) // its budget is whole: nothing to keep
			}
		}
	}
	sh.tat[client] = max(sh.tat[client], ns) + interval
}

// Limit returns the budget: failures a minute.
func (f *FailedAuth) Limit() int64 {
	interval, _ := f.budget()
	return int64(time.Minute) / interval
}

// Client returns the client r comes from: its remote address without the
// port, or behind a trusted proxy the address the proxies report; for an
// IPv6 address, its network of IPv6Prefix bits ("2001:db8:1:2::/64").
func (f *FailedAuth) Client(r *http.Request) string {
	client := r.RemoteAddr
	if host, _, err := net.SplitHostPort(client); err == nil {
		client = host
	}
	if len(f.TrustedProxies) == 0 || !f.trusted(client) {
		return f.name(client)
	}
	hops := f.forwarded(r)
	for i := len(hops) - 1; i >= 0; i-- {
		client = hops[i]
		if !f.trusted(client) {
			break
		}
	}
	return f.name(client)
}

// name is the client of addr: an IPv6 address's network of IPv6Prefix
// bits, an IPv4 address (mapped to IPv6 or not) itself, anything else its
// first maxClientLen bytes.
func (f *FailedAuth) name(addr string) string {
	a, err := netip.ParseAddr(addr)
	switch {
	case err != nil:
		if len(addr) > maxClientLen {
			return addr[:maxClientLen]
		}
		return addr
	case a.Is4():
		return addr
	case a.Is4In6():
		return a.Unmap().String()
	}
	bits := min(f.IPv6Prefix, 128)
	if bits <= 0 {
		bits = DefaultIPv6Prefix
	}
	p, _ := a.Prefix(bits) // bits is in range: no error
	return p.String()
}

func (f *FailedAuth) trusted(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range f.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwarded returns the client addresses the proxies reported in f's
// ForwardedHeader, first hop first: Forwarded's for= parameters, or
// X-Forwarded-For's entries.
func (f *FailedAuth) forwarded(r *http.Request) []string {
	var hops []string
	if strings.EqualFold(f.ForwardedHeader, forwardedRFC) {
		for _, v := range r.Header.Values(forwardedRFC) {
			for elem := range strings.SplitSeq(v, ",") {
				for pair := range strings.SplitSeq(elem, ";") {
					k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
					if ok && strings.EqualFold(k, "for") {
						hops = append(hops, nodeAddr(strings.Trim(val, `"`)))
					}
				}
			}
		}
		return hops
	}
	for _, v := range r.Header.Values(xForwardedFor) {
		for a := range strings.SplitSeq(v, ",") {
			hops = append(hops, nodeAddr(strings.TrimSpace(a)))
		}
	}
	return hops
}

// nodeAddr strips a port and IPv6 brackets from a reported address.
func nodeAddr(s string) string {
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return strings.Trim(s, "[]")
}
