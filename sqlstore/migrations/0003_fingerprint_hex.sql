-- An idempotency key's request fingerprint is opaque bytes (ChargeCredits
-- makes raw SHA-256), which PostgreSQL refuses in a TEXT column unless
-- they are valid UTF-8: from now on it is stored hex-encoded. Existing
-- rows are converted: SQLite may hold raw bytes, PostgreSQL only valid
-- UTF-8 (the only fingerprints it could store).
UPDATE keyward_reservations SET fingerprint = {{hex:fingerprint}} WHERE fingerprint <> '';
