-- Settings of the database itself, a row each. key_prefix: the prefix of
-- the keys it holds, stored by the first Open that finds none (see
-- Store.keyPrefix); every later Open uses it and refuses another.
CREATE TABLE IF NOT EXISTS keyward_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
