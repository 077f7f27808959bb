-- The per-second bucket's capacity (its burst), a limit of its own. Zero is
-- "derived" (keyward.Limits.Burst): the larger of the per-second rate and
-- the in-flight cap, which gives the default plans keyward.DefaultPlans()'s
-- bursts (2, 5, 10, 20) with no row to update.
ALTER TABLE keyward_plans ADD COLUMN burst BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keyward_orgs ADD COLUMN burst BIGINT NOT NULL DEFAULT 0;
