package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/keyward/keyward/rate"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/redislimit"
	"github.com/keyward/keyward/sqlstore"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

type serveFlags struct {
	addr        string
	metricsAddr string // "": /metrics on addr
	redis       string
	ledger      string
	loadtest    bool

	// The admin API and dashboard: mounted when adminTokens names a token
	// file; loginLink prints a one-time sign-in link.
	adminTokens string
	loginLink   bool

	// The server's bounds (http.Server fields of the same names) and the
	// Redis client's: what a slow client or a frozen Redis can cost.
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	maxHeaderBytes                                            int
	redisTimeout                                              time.Duration

	// The throttle of failed authentication (keyward.AuthConfig.FailedAuth).
	failedAuthPerMinute int64
	trustedProxies      []string
	proxies             []netip.Prefix // trustedProxies, parsed by check
	forwardedHeader     string
	secureCookies       bool
}

// limitFlags adds the flags of the server's and the Redis client's bounds
// to cmd. The defaults are the deployment checklist's (SECURITY.md).
func (f *serveFlags) limitFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", 10*time.Second, "longest wait for a request's headers")
	fs.DurationVar(&f.readTimeout, "read-timeout", 30*time.Second, "longest wait for a whole request, body included")
	fs.DurationVar(&f.writeTimeout, "write-timeout", time.Minute,
		"longest time from a request's headers to the end of its answer (below the 5 min credit reservation TTL)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", time.Minute,
		"how long a kept-alive connection may wait for its next request (behind a load balancer, above its idle timeout)")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block, in bytes")
	fs.DurationVar(&f.redisTimeout, "redis-timeout", redislimit.DefaultTimeout,
		"longest wait for Redis in one rate-limit check; past it the request is served without a limit")
	fs.Int64Var(&f.failedAuthPerMinute, "failed-auth-per-minute", rate.DefaultFailedAuthPerMinute,
		"requests with a missing, malformed or unknown key one client may make a minute (burst 10) before it gets 429s; 0: no limit")
	fs.StringSliceVar(&f.trustedProxies, "trusted-proxy", nil,
		"address or CIDR of a proxy whose --forwarded-header names the client (repeatable; none: the remote address is the client)")
	fs.BoolVar(&f.secureCookies, "secure-cookies", false,
		"mark the dashboard's cookies Secure on every request: behind a proxy that terminates TLS (default: on TLS requests only)")
	fs.StringVar(&f.forwardedHeader, "forwarded-header", "X-Forwarded-For",
		"the header the trusted proxies write the client's address to: X-Forwarded-For or Forwarded (only that one is read)")
}

// failedAuth is the throttle the flags describe; nil when it is off.
func (f *serveFlags) failedAuth() *rate.FailedAuth {
	if f.failedAuthPerMinute == 0 {
		return nil
	}
	return &rate.FailedAuth{PerMinute: f.failedAuthPerMinute, TrustedProxies: f.proxies, ForwardedHeader: f.forwardedHeader}
}

// check refuses bounds that are not bounds.
func (f *serveFlags) check() error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--read-header-timeout", f.readHeaderTimeout}, {"--read-timeout", f.readTimeout},
		{"--write-timeout", f.writeTimeout}, {"--idle-timeout", f.idleTimeout}, {"--redis-timeout", f.redisTimeout},
	} {
		if d.v <= 0 {
			return usageError{fmt.Errorf("%s must be positive", d.flag)}
		}
	}
	if f.writeTimeout >= credit.DefaultReservationTTL {
		// Running calls renew their reservations, but a write that takes
		// longer than a reservation's whole life is a stuck client.
		return usageError{fmt.Errorf("--write-timeout must be below the credit reservation TTL, %v", credit.DefaultReservationTTL)}
	}
	if f.maxHeaderBytes <= 0 {
		return usageError{errors.New("--max-header-bytes must be positive")}
	}
	if f.failedAuthPerMinute < 0 {
		return usageError{errors.New("--failed-auth-per-minute must not be negative")}
	}
	if err := (&rate.FailedAuth{ForwardedHeader: f.forwardedHeader}).Check(); err != nil {
		return usageError{fmt.Errorf("--forwarded-header %q: want X-Forwarded-For or Forwarded", f.forwardedHeader)}
	}
	f.proxies = f.proxies[:0]
	for _, p := range f.trustedProxies {
		prefix, err := netip.ParsePrefix(p)
		if addr, err2 := netip.ParseAddr(p); err != nil && err2 == nil {
			prefix, err = addr.Prefix(addr.BitLen())
		}
		if err != nil {
			return usageError{fmt.Errorf("--trusted-proxy %q: want an IP address or a CIDR such as 10.0.0.0/8", p)}
		}
		f.proxies = append(f.proxies, prefix)
	}
	return nil
}

// serveCommand is `keyward serve`.
func (a *app) serveCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:8080] [--redis redis://…]",
		Short: "Serve the demo API (a miniature transaction-enrichment API) protected by keyward",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			a.leases = f.ledger == "db"
			a.create = true
			return a.withStore(cmd.Context(), func(s *sqlstore.Store) error {
				return a.serve(cmd.Context(), s, f, nil)
			})
		},
	}
	cmd.Flags().StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on")
	cmd.Flags().StringVar(&f.redis, "redis", "", "Redis URL for rate-limit counters shared by several instances (default: in memory)")
	cmd.Flags().StringVar(&f.ledger, "ledger", "db", "where credits are kept: db (the --db database, served from leases written in batches), exact (the --db database, two transactions a call) or memory (lost on exit; for load tests)")
	cmd.Flags().BoolVar(&f.loadtest, "loadtest", false, "also serve the load-test routes (POST /loadtest/protected, /loadtest/open, GET /loadtest/stats)")
	cmd.Flags().StringVar(&f.adminTokens, "admin-tokens", envOr("KEYWARD_ADMIN_TOKENS", ""),
		"admin token file (keyward admin token create): serve the admin API at /admin/v1/ and the dashboard at /dashboard/ (env KEYWARD_ADMIN_TOKENS)")
	cmd.Flags().BoolVar(&f.loginLink, "login-link", false, "print a one-time dashboard sign-in link, valid 15 minutes (needs --admin-tokens)")
	f.limitFlags(cmd)
	cmd.Flags().StringVar(&f.metricsAddr, "metrics-addr", "",
		"serve GET /metrics on this address of its own instead of --addr's (e.g. 127.0.0.1:9464 when --addr is public)")
	return cmd
}

// serve runs the demo API until ctx is done, then shuts down gracefully:
// requests in flight finish and settle their credits, and usage is
// flushed when the store closes.
func (a *app) serve(ctx context.Context, s *sqlstore.Store, f serveFlags, ready func(addr, metrics, login string)) error {
	logger := slog.New(slog.NewTextHandler(a.stderr, nil))
	var err error
	var limitStore = keyward.RateLimitConfig{}.Store
	if f.redis != "" {
		var opts *redis.Options
		opts, err = redislimit.ClientOptions(f.redis, f.redisTimeout)
		if err != nil {
			return usageError{fmt.Errorf("--redis: %w", err)}
		}
		client := redis.NewClient(opts)
		defer client.Close()
		rs, err := redislimit.New(ctx, client, redislimit.Options{Timeout: f.redisTimeout})
		if err != nil {
			return fmt.Errorf("--redis %s: %w", redactDSN(f.redis), err)
		}
		limitStore = rs
	}
	var ledger credit.Ledger = s
	switch f.ledger {
	case "", "db", "exact":
	case "memory":
		if ledger, err = memstore.NewLedger(memstore.LedgerOptions{}); err != nil {
			return err
		}
	default:
		return usageError{fmt.Errorf("--ledger %q: want db, exact or memory", f.ledger)}
	}
	h, err := newDemoAPI(s, ledger, limitStore, f.failedAuth(), logger, f.loadtest)
	if err != nil {
		return err
	}
	var login string
	if h, login, err = mountAdmin(h, s, ledger, f, logger); err != nil {
		return err
	}
	ln, err := listen(f.addr, "--addr")
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().String()
	// Telemetry (telemetry.go): GET /metrics, and OTLP export when OTEL_* says so.
	h, metrics, stopTelemetry, err := serveTelemetry(ctx, h, addr)
	if err != nil {
		return err
	}
	defer func() { _ = stopTelemetry(context.Background()) }()
	// /metrics beside the API, or alone on a listener of its own.
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	srv, metricsURL := f.server(logger, mux), "http://"+addr+"/metrics"
	var msrv *http.Server
	if f.metricsAddr == "" {
		mux.Handle("/", h)
	} else {
		mln, err := listen(f.metricsAddr, "--metrics-addr")
		if err != nil {
			return err
		}
		defer mln.Close()
		srv, msrv = f.server(logger, h), srv
		metricsURL = "http://" + mln.Addr().String() + "/metrics"
		go func() { _ = msrv.Serve(mln) }()
	}
	logger.Info("keyward: serving the demo API", "addr", "http://"+addr, "db", s.Dialect(), "metrics", metricsURL)
	if ready != nil {
		ready(addr, metricsURL, login)
	} else if login != "" {
		fmt.Fprintf(a.stdout, "dashboard sign-in link (works once, for 15 minutes): http://%s%s\n", addr, login)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("keyward: shutting down; letting requests in flight finish")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if msrv != nil {
		_ = msrv.Shutdown(shutdownCtx)
	}
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// listen listens on addr, the value of flag, with an error that says what
// to do when the address is taken.
func listen(addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s is in use by another program; choose another address with %s (e.g. %s 127.0.0.1:0 for any free port): %w", addr, flag, flag, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s (%s): %w", addr, flag, err)
	}
	return ln, nil
}

// server is an http.Server of h with the bounds f gives.
func (f *serveFlags) server(logger *slog.Logger, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: f.readHeaderTimeout,
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      f.writeTimeout,
		IdleTimeout:       f.idleTimeout,
		MaxHeaderBytes:    f.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// mountAdmin returns api with the admin API and the dashboard mounted
// beside it when f names an admin token file, and the path of a one-time
// sign-in link when f asks for one.
func mountAdmin(api http.Handler, s *sqlstore.Store, ledger credit.Ledger, f serveFlags, logger *slog.Logger) (http.Handler, string, error) {
	if f.adminTokens == "" {
		if f.loginLink {
			return nil, "", usageError{errors.New("--login-link needs --admin-tokens")}
		}
		return api, "", nil
	}
	tokens, err := admin.OpenTokenFile(f.adminTokens)
	if err != nil {
		return nil, "", fmt.Errorf("--admin-tokens: %w (create it with `keyward admin token create`)", err)
	}
	cfg := admin.Config{Keys: s, Ledger: ledger, Usage: s, Plans: s.Plans, Tokens: tokens, Permissions: demoPermissions,
		Errors: &keyward.ErrorWriter{Logger: logger}, Logger: logger, SecureCookies: f.secureCookies}
	if ledger == credit.Ledger(s) {
		cfg.History = s
	}
	adm, err := admin.New(cfg)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle(admin.APIPath, adm)
	mux.Handle(admin.PagePath, adm)
	var login string
	if f.loginLink {
		if login, err = adm.LoginLink(0); err != nil {
			return nil, "", err
		}
	}
	return mux, login, nil
}
