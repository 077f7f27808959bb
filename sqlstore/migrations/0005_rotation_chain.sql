-- A rotation's two keys name each other: the new key its predecessor,
-- the old key its successor ('' for none). A key with a successor is not
-- rotated again, so a retried rotation never leaves two new keys working.
-- Hints are looked up by `keyward keys whois`.
ALTER TABLE keyward_keys ADD COLUMN predecessor TEXT NOT NULL DEFAULT '';
ALTER TABLE keyward_keys ADD COLUMN successor TEXT NOT NULL DEFAULT '';
CREATE INDEX keyward_keys_hint ON keyward_keys (hint);
