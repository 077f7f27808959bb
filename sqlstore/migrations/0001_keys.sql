-- Organizations and their keys. Times are Unix nanoseconds, 0 for none,
-- so that one schema serves SQLite and PostgreSQL alike.
CREATE TABLE keyward_orgs (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    plan            TEXT NOT NULL,
    rate_per_minute BIGINT NOT NULL DEFAULT 0,
    monthly_credits BIGINT NOT NULL DEFAULT 0,
    allow_overage   BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);

CREATE TABLE keyward_keys (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES keyward_orgs (id),
    hash            TEXT NOT NULL UNIQUE,
    hint            TEXT NOT NULL,
    name            TEXT NOT NULL,
    environment     TEXT NOT NULL,
    permissions     TEXT NOT NULL,
    rate_per_minute BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL DEFAULT 0,
    revoked_at      BIGINT NOT NULL DEFAULT 0,
    last_used_at    BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX keyward_keys_org ON keyward_keys (org_id, created_at);

-- Every change to a key, for the change feed of instances that cannot
-- LISTEN (SQLite polls it; PostgreSQL also gets a NOTIFY).
CREATE TABLE keyward_key_changes (
    id         {{serial}},
    hash       TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);

-- Requests let through, per organization and UTC day, written in batches.
CREATE TABLE keyward_usage (
    org_id   TEXT NOT NULL REFERENCES keyward_orgs (id),
    day      BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (org_id, day)
);
