-- Calls per key, UTC hour (hours since 1970) and outcome, and the credits
-- they spent: the dashboard's last 24 hours. Written by the usage flush in
-- the transaction that writes keyward_key_usage; hours older than two days
-- are deleted, in batches, by later flushes (the index on hour finds them).
CREATE TABLE IF NOT EXISTS keyward_key_usage_hourly (
    org_id   TEXT NOT NULL,
    key_id   TEXT NOT NULL,
    hour     BIGINT NOT NULL,
    outcome  TEXT NOT NULL,
    requests BIGINT NOT NULL,
    credits  BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour, outcome)
);

CREATE INDEX IF NOT EXISTS keyward_key_usage_hourly_org ON keyward_key_usage_hourly (org_id, hour);

CREATE INDEX IF NOT EXISTS keyward_key_usage_hourly_hour ON keyward_key_usage_hourly (hour);
