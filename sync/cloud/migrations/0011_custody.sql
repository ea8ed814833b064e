-- Custody (sync/cloud/custody.py): who holds each bear, at which generation, every change of
-- hands as one transaction with an audit row; invitations that are mailed and accepted;
-- releases that the holding family approves; one pending claim per bear; guessing budgets
-- per client address and fleet-wide. The existing columns of `pairings` keep their meaning.

-- The generation of a bear's custody: +1 at every new holder (0: never held).
ALTER TABLE devices ADD COLUMN generation integer NOT NULL DEFAULT 0;
ALTER TABLE pairings ADD COLUMN generation integer;
UPDATE pairings p SET generation = g.n FROM (
    SELECT pairing_id, row_number() OVER (PARTITION BY device_id ORDER BY approved_at) AS n
      FROM pairings WHERE approved_at IS NOT NULL) g
 WHERE p.pairing_id = g.pairing_id;
UPDATE devices d SET generation = coalesce(
    (SELECT max(p.generation) FROM pairings p WHERE p.device_id = d.device_id), 0);

-- The audit trail: one row per transition, written in the transition's transaction.
CREATE TABLE custody_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    device_id   text,
    pairing_id  uuid,
    generation  integer,
    family_id   uuid,
    actor       text NOT NULL DEFAULT '',
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX custody_events_device ON custody_events (device_id, at);
CREATE INDEX custody_events_family ON custody_events (family_id, at);

-- One pending claim per bear: older pending claims are void (their codes no longer work).
UPDATE pairings p SET status = 'expired' WHERE status = 'pending' AND EXISTS (
    SELECT 1 FROM pairings q WHERE q.device_id = p.device_id AND q.status = 'pending'
       AND (q.first_seen, q.claim_id) > (p.first_seen, p.claim_id));
CREATE UNIQUE INDEX pairings_one_pending ON pairings (device_id) WHERE status = 'pending';

-- Invitations: a mailed token (only its hash kept), an expiry, cancel/decline, who accepted.
ALTER TABLE family_invites ADD COLUMN token_hash bytea;
ALTER TABLE family_invites ADD COLUMN expires_at timestamptz;
ALTER TABLE family_invites ADD COLUMN cancelled_at timestamptz;
ALTER TABLE family_invites ADD COLUMN declined_at timestamptz;
ALTER TABLE family_invites ADD COLUMN accepted_by uuid REFERENCES parents (parent_id)
    ON DELETE SET NULL;
-- Invitations made before this migration were never mailed nor accepted: void them.
UPDATE family_invites SET cancelled_at = now(), expires_at = now() WHERE accepted_at IS NULL;
UPDATE family_invites SET expires_at = created_at WHERE expires_at IS NULL;
ALTER TABLE family_invites ALTER COLUMN expires_at SET NOT NULL;
CREATE UNIQUE INDEX family_invites_token ON family_invites (token_hash)
    WHERE token_hash IS NOT NULL;
CREATE INDEX family_invites_family ON family_invites (family_id, created_at);

-- A release of a held bear asked for by a claim from another party: waits for the holding
-- family (approve or object); never decided by a file on the bear alone.
CREATE TABLE custody_releases (
    release_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id   text NOT NULL,
    pairing_id  uuid NOT NULL,
    generation  integer NOT NULL,
    claim_id    text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    decided_at  timestamptz,
    decision    text CHECK (decision IN ('approved', 'objected', 'expired', 'superseded')),
    decided_by  text
);
CREATE UNIQUE INDEX custody_releases_open ON custody_releases (pairing_id)
    WHERE decided_at IS NULL;

-- Wrong codes: also per client address (beside the requester) and counted fleet-wide.
ALTER TABLE pairing_failures ADD COLUMN address text;
CREATE INDEX pairing_failures_address ON pairing_failures (address, failed_at);
CREATE INDEX pairing_failures_at ON pairing_failures (failed_at);
