// Package keyward is the API-key layer of an HTTP API: keys such as
// "triq_…" in the X-API-Key header, each belonging to one organization that
// decides what the key may call, how fast, and whose credits each
// successful call spends.
//
// # The request path
//
// Four handlers, each usable alone, compose in this order:
//
//	RequireAPIKey → EnforcePermissions → RateLimitByOrg → ChargeCredits → handler
//
// Each constructor checks its configuration and returns the handler's
// decision ([Authenticator], [PermissionChecker], [RateLimiter],
// [Charger]); its Middleware method is the net/http middleware, and
// adapters for other routers (github.com/keyward/keyward/adapters/gin and
// …/echo, each its own module) call the same decisions. The conformance
// kit in package keywardtest proves that they answer as net/http does.
//
// RequireAPIKey checks the key's shape without I/O and finds the stored
// record of exactly that key (the [Cache] compares a recently found key
// whole, or looks up its SHA-256; a store lookup only after the CRC32
// checksum matched), refuses revoked and expired keys and attaches the
// [KeyRecord], organization and its resolved [Limits] included, to the
// request ([FromContext]): who is calling exists once. The handlers after
// it answer 500, never panic, without it or with a record they cannot use.
// With a cached key the chain makes four allocations per request.
//
// # Where things are
//
// The root package, the request path, one file per concept (its tests in
// the file of the same name; chain_test.go for what crosses handlers):
//
//	auth.go         RequireAPIKey: the Authenticator, AuthConfig
//	request.go      what keyward keeps for one request between its handlers
//	cache.go        the key cache (ristretto) and its exact revocation
//	keys.go         keys: format, hash, hint; KeyRecord, Organization, KeyStore
//	base62.go       the keys' alphabet
//	plans.go        the plan table and the one override rule (Plans.Resolve)
//	permissions.go  EnforcePermissions
//	ratelimit.go    RateLimitByOrg: which limit refused, and the headers
//	credits.go      ChargeCredits: reserve, run, settle; SetCost
//	idempotency.go  which idempotency key a call carries, and its request
//	calls.go        what RequireAPIKey tells a CallRecorder of each call
//	observe.go      telemetry's one look at each handler's decision
//	failures.go     every failure's code, reason, status and message, and
//	                the one ErrorWriter (byte-identical on every router; a
//	                store that cannot be reached is a 503, never a 401),
//	                which writes the success envelope too (WriteData)
//
// Packages of this module:
//
//	credit/         the credit ledger contract that memstore and sqlstore keep
//	manage/         key management: creating, rotating, revoking (KeyManager)
//	rate/           rate-limit state: per-second bucket, per-minute quota,
//	                in-flight slots (Memory, Ulule); failed-auth throttle
//	usage/          calls and credits per key, by day and outcome
//	memstore/       organizations, keys, ledger and usage in memory
//	sqlstore/       the same in SQL: schema (migrations/), queries, change
//	                feed, batched usage, the leased ledger; the engine a
//	                program imports: sqlstore/sqlite/ (pure Go, embedded
//	                default) or sqlstore/postgres/ (pgx), so it compiles
//	                only that one
//	redislimit/     rate limits kept in Redis, shared by every instance
//	telemetry/      configuration and the names of keyward's OpenTelemetry
//	                metrics and spans (the hooks are internal/hooks)
//	admin/          the admin HTTP API and the dashboard (static/, templates/)
//	keywardtest/    the public contract suites: key backends, ledgers, routers
//	cmd/keyward/    the command: orgs, keys, credits, plans, admin tokens,
//	                scan, serve and demo (one file each)
//	internal/       out of the request path's sight: the tricks that need
//	                tests of their own, each with one user: front (the
//	                cache's exact-key slots, compared whole in constant
//	                time), keepalive (open reservations renewed from one
//	                goroutine, no timer a call), policy (rate-limit header
//	                values formatted once per set of limits), recent (the
//	                bounded set of keys found lately), strsum (checksums of
//	                a string without an allocation); helpers with several
//	                users: ascii, clock, detach, hooks (telemetry's layer:
//	                the ledger wrapped once, one observation per decision),
//	                ids, nilness, perm, statuswriter; testenv (the real
//	                servers tests use)
//
// Modules of their own, tied together by go.work, and the rest:
//
//	adapters/gin/, adapters/echo/  the handlers as gin and echo middleware
//	bench/          keyward beside ulule/limiter and go-chi/httprate
//	e2e/            the dashboard in headless Chromium against keyward serve
//	docs/           the guides the README links to
//	scripts/        the load test (loadtest/), the telemetry benchmark and
//	                the build-size measurement (buildsize/)
//	testdata/       the fuzz corpus of the root package's fuzz targets
//	.ci/            CI's entry point (run) and testsum, which sums go test -json
//
// # What a deployment MUST do
//
//   - Serve keys over TLS only: a key is a bearer credential.
//   - Keep only hashes: manage.KeyManager implementations store SHA-256 and
//     a display hint; show the plaintext to its owner once, at creation.
//   - Tell the cache of changes: call [Cache.Invalidate] (memstore.Store's
//     Watch does it) so that a revocation takes effect at once on the
//     instance that made it; other instances learn within the store's
//     change-feed bound, and at worst within [CacheConfig].TTL.
//   - Never log the X-API-Key header. keyward never echoes a presented key in
//     a body, a header or a log record.
//
// # What a deployment SHOULD do
//
//   - Put a [Cache] in front of any database-backed store: a cached key costs
//     no store call.
//   - Run `keyward scan` (or an equivalent) as a pre-commit hook: keys carry
//     a checksum so that leaked keys are found without false positives.
package keyward
