-- Triqai's rate-limit model: a per-second token bucket and an in-flight
-- cap beside the per-minute quota. Zero is "derived" (keyward.Limits): the
-- per-minute rate spread over the minute, and that rate (at least 2) in
-- flight. The default plans get keyward.DefaultPlans()'s numbers unless an
-- operator changed their per-minute rate.
ALTER TABLE keyward_plans ADD COLUMN requests_per_second BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keyward_plans ADD COLUMN concurrency BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keyward_orgs ADD COLUMN rate_per_second BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keyward_orgs ADD COLUMN concurrency BIGINT NOT NULL DEFAULT 0;
UPDATE keyward_plans SET requests_per_second = 1, concurrency = 2 WHERE name = 'free' AND requests_per_minute = 60;
UPDATE keyward_plans SET requests_per_second = 5, concurrency = 5 WHERE name = 'starter' AND requests_per_minute = 300;
UPDATE keyward_plans SET requests_per_second = 10, concurrency = 10 WHERE name = 'growth' AND requests_per_minute = 600;
UPDATE keyward_plans SET requests_per_second = 20, concurrency = 20 WHERE name = 'business' AND requests_per_minute = 1200;
