-- PostgreSQL at scale (issue 15): `turns` partitioned by month of the turn's own time
-- (created_at, as the bear sent it), so retention drops whole months instead of deleting
-- rows one by one. Converts a populated table in this one transaction: every row survives
-- with every column as it was (pairing_id too: the stamping trigger is re-created only
-- after the copy, so a turn kept without a family is not stamped with today's).
--
-- The idempotency key becomes (device_id, seq, created_at): PostgreSQL requires the
-- partition key in every unique constraint. A resend carries the identical created_at (the
-- bear resends the row of its own store), so it still conflicts and is never duplicated.
-- See docs/operations.md, "PostgreSQL at scale".

ALTER TABLE turns RENAME TO turns_unpartitioned;
ALTER TABLE turns_unpartitioned RENAME CONSTRAINT turns_pkey TO turns_unpartitioned_pkey;
ALTER INDEX IF EXISTS turns_conversation RENAME TO turns_unpartitioned_conversation;
ALTER INDEX IF EXISTS turns_pairing RENAME TO turns_unpartitioned_pairing;
ALTER INDEX IF EXISTS turns_device_created RENAME TO turns_unpartitioned_device_created;
DROP TRIGGER IF EXISTS turns_stamp_pairing ON turns_unpartitioned;

CREATE TABLE turns (
    device_id       text NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
    seq             bigint NOT NULL CHECK (seq > 0),
    conversation_id text NOT NULL,
    role            text NOT NULL CHECK (role IN ('child', 'bear')),
    text            text NOT NULL,
    created_at      timestamptz NOT NULL,
    action          text NOT NULL,
    categories      text[] NOT NULL DEFAULT '{}',
    batch_id        text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    pairing_id      uuid,
    PRIMARY KEY (device_id, seq, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX turns_conversation ON turns (device_id, conversation_id);
CREATE INDEX turns_pairing ON turns (pairing_id);
CREATE INDEX turns_device_created ON turns (device_id, created_at);

-- Anything no month partition holds (a bear whose clock was years off, a month whose
-- partition was not made in time): an insert never fails for want of a partition.
CREATE TABLE turns_default PARTITION OF turns DEFAULT;

-- The partition of one month, [first day 00:00 UTC, next month's first day 00:00 UTC),
-- named turns_pYYYYMM; made standalone and then attached (ATTACH locks the parent only
-- SHARE UPDATE EXCLUSIVE, so ingest keeps writing), taking along any rows of that month
-- that had landed in the default partition. Returns whether it made it.
CREATE FUNCTION teddy_turns_partition(month date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    name text := 'turns_p' || to_char(first, 'YYYYMM');
    low timestamptz := first::timestamp AT TIME ZONE 'UTC';
    high timestamptz := (first + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- no insert may reach the default partition between the move and the attach
    LOCK TABLE turns_default IN SHARE ROW EXCLUSIVE MODE;
    EXECUTE format('CREATE TABLE %I (LIKE turns INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   name);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (created_at >= %L AND'
                   ' created_at < %L)', name, name || '_range', low, high);
    EXECUTE format('WITH moved AS (DELETE FROM turns_default WHERE created_at >= %L AND'
                   ' created_at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   low, high, name);
    EXECUTE format('ALTER TABLE turns ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, low, high);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_range');
    RETURN true;
END
$$;

-- Months of the existing rows (at most the last 13: older ones wait in the default
-- partition for the row-by-row sweep), this month and the next two.
SELECT teddy_turns_partition(month::date)
  FROM generate_series(
         date_trunc('month', GREATEST(
             LEAST((SELECT min(created_at) FROM turns_unpartitioned), now()),
             now() - interval '13 months') AT TIME ZONE 'UTC'),
         date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months',
         interval '1 month') AS month;

INSERT INTO turns (device_id, seq, conversation_id, role, text, created_at, action,
                   categories, batch_id, received_at, pairing_id)
SELECT device_id, seq, conversation_id, role, text, created_at, action, categories,
       batch_id, received_at, pairing_id
  FROM turns_unpartitioned;
DROP TABLE turns_unpartitioned;

-- Ingest stamps every new turn with its bear's current pairing, as before (0007/0009).
CREATE TRIGGER turns_stamp_pairing BEFORE INSERT ON turns
    FOR EACH ROW EXECUTE FUNCTION teddy_stamp_pairing();
ANALYZE turns;
