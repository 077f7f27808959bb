-- The plan table is data: every instance and the keyward command read it
-- from here (unless code gives sqlstore.Options.Plans), so a plan added by
-- one instance is known to the others without a deploy. Seeded with
-- keyward.DefaultPlans() (a test keeps the two equal). A zero rate is
-- "custom": each organization on the plan sets its own. Written so that it
-- can run twice.
CREATE TABLE IF NOT EXISTS keyward_plans (
    name                TEXT PRIMARY KEY,
    requests_per_minute BIGINT NOT NULL,
    monthly_credits     BIGINT NOT NULL
);

INSERT INTO keyward_plans (name, requests_per_minute, monthly_credits) VALUES
    ('free', 60, 100),
    ('starter', 300, 4000),
    ('growth', 600, 25000),
    ('business', 1200, 100000),
    ('enterprise', 0, 0)
    ON CONFLICT (name) DO NOTHING;
