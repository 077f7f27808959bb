-- Credits. An account row holds an organization's current billing period
-- and its running totals; every change to them is also an append-only
-- entry in keyward_ledger, from which the balance can be rebuilt.
CREATE TABLE keyward_credit_accounts (
    org_id       TEXT PRIMARY KEY,
    period_start BIGINT NOT NULL,
    period_end   BIGINT NOT NULL,
    allocation   BIGINT NOT NULL,
    granted      BIGINT NOT NULL DEFAULT 0,
    spent        BIGINT NOT NULL DEFAULT 0,
    reserved     BIGINT NOT NULL DEFAULT 0,
    open_count   BIGINT NOT NULL DEFAULT 0,
    -- A lower bound of the earliest expiry among open reservations (0 for
    -- none): calls look for expired reservations only once it has passed.
    next_expiry  BIGINT NOT NULL DEFAULT 0
);

-- One row per reservation: open until committed, released or expired.
CREATE TABLE keyward_reservations (
    id              {{serial}},
    org_id          TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    state           TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    charged         BIGINT NOT NULL DEFAULT 0,
    period_start    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    settled_at      BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX keyward_reservations_open ON keyward_reservations (org_id, state, expires_at);
CREATE INDEX keyward_reservations_idem ON keyward_reservations (org_id, idempotency_key, created_at);

-- Append-only: kind is grant, commit, release or expire.
CREATE TABLE keyward_ledger (
    id              {{serial}},
    org_id          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    reservation_id  BIGINT NOT NULL DEFAULT 0,
    key_id          TEXT NOT NULL DEFAULT '',
    request_id      TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL DEFAULT '',
    period_start    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE INDEX keyward_ledger_org ON keyward_ledger (org_id, period_start);

-- At most one reservation per idempotency key is open or committed: the
-- database, not only the code, refuses a double charge.
CREATE UNIQUE INDEX keyward_reservations_idem_live ON keyward_reservations (org_id, idempotency_key)
    WHERE idempotency_key <> '' AND state IN ('open', 'committed');
