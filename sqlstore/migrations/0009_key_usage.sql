-- Calls per key, UTC day and outcome (served, forbidden,
-- insufficient_credits, rate_limited, failed) and the credits they spent:
-- what the dashboard charts. Written in batches by the usage flush.
CREATE TABLE IF NOT EXISTS keyward_key_usage (
    org_id   TEXT NOT NULL,
    key_id   TEXT NOT NULL,
    day      BIGINT NOT NULL,
    outcome  TEXT NOT NULL,
    requests BIGINT NOT NULL,
    credits  BIGINT NOT NULL,
    PRIMARY KEY (key_id, day, outcome)
);

CREATE INDEX IF NOT EXISTS keyward_key_usage_org ON keyward_key_usage (org_id, day);
