-- Leases. A lease is a block of an organization's credits that one
-- instance holds, so that it can serve calls from memory: an open
-- reservation row with lease = 1 (counted in the account's reserved and
-- open_count, released at expires_at like any reservation, so a lease of
-- an instance that died comes back by itself). Its amount is what the
-- instance still holds: what it spent is moved to the account's spent, with
-- one commit entry per call, each time it flushes.
ALTER TABLE keyward_reservations ADD COLUMN lease INTEGER NOT NULL DEFAULT 0;
-- Until lease_recall (Unix ns), no instance takes a lease of the
-- organization and each returns what its lease holds unused at its next
-- flush: set by a call that found too few credits while other instances
-- held leases, so that the last credits can be spent from any instance.
ALTER TABLE keyward_credit_accounts ADD COLUMN lease_recall BIGINT NOT NULL DEFAULT 0;
