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
// RequireAPIKey parses the key (prefix, length, alphabet, CRC32 checksum)
// without any I/O, hashes it with SHA-256, finds it through a [Cache] in
// front of a [KeyStore], refuses revoked and expired keys and attaches a
// [Principal] to the request context ([FromContext]). A key found before
// is found again in the cache's front by a cheap tag instead of the
// checksum and hash. The handlers after it read that Principal; used
// without it they answer 500, never panic. Behind RequireAPIKey the whole
// chain makes one allocation per request: the request state, which holds
// the request copy, the Charge and the rate-limit header values.
//
// # Credits
//
// [ChargeCredits] (or a [Charger]) reserves a call's cost in a
// [CreditLedger] before the handler runs and settles after it: commit on a
// 2xx, release on any other status, a panic, a hijack, or a client gone
// before anything was written. The handler may change its cost with
// [SetCost]. An Idempotency-Key makes a retried call spend once. The
// ledger's contract, written on [CreditLedger], is what memstore and
// sqlstore both keep.
//
// # Other routers
//
// Each handler is a decision the core exports, and a net/http middleware
// built from it: [Authenticator.Authenticate], [PermissionChecker.Check],
// [RateLimiter.Check] and [Charger.Begin] with [Charge.Run] decide; the
// WriteError method of each writes; [AttachPrincipal] and [Charge.Request]
// pass the request on as the net/http handlers do. Adapters for other routers
// (github.com/keyward/keyward/adapters/gin and …/echo, each its own module)
// are built from them alone, and the conformance kit in package keywardtest
// proves that they answer as net/http does.
//
// # Failures
//
// Every failure is an [*Error] written by one [ErrorWriter] as one JSON
// envelope (success, error.code, error.message, error.details, meta), so
// every router gives byte-identical answers. A key store that cannot be
// reached is a 503, never a 401: keyward fails closed.
//
// # What a deployment MUST do
//
//   - Serve keys over TLS only: a key is a bearer credential.
//   - Keep only hashes: [KeyManager] implementations store SHA-256 and a
//     display hint; show the plaintext to its owner once, at creation.
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
//     no store call and no allocation beyond the two that attaching a
//     context value costs.
//   - Run `keyward scan` (or an equivalent) as a pre-commit hook: keys carry
//     a checksum so that leaked keys are found without false positives.
package keyward
