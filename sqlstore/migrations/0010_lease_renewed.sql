-- When a lease's holder last wrote it (Unix ns; 0 for a row that is not
-- a lease, or a lease written before this column). A call that waited for
-- recalled leases answers 402 when every holder wrote since it began
-- waiting (what they still hold is in flight), and 503 when one did not (a
-- holder that died: its lease is returned at expires_at).
ALTER TABLE keyward_reservations ADD COLUMN renewed_at BIGINT NOT NULL DEFAULT 0;
