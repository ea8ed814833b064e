-- Identity at manufacture, one-shot pairing, and family (pairing) scope of every row.

-- A bear is registered by `teddy-cloud provision`; only a registered bear can be claimed.
ALTER TABLE devices ADD COLUMN manufactured_at timestamptz;
UPDATE devices SET manufactured_at = first_seen
 WHERE device_id IN (SELECT device_id FROM pairings WHERE status IN ('approved', 'unpaired'));

-- Each claim row carries the pairing (family) id it starts if approved; a re-pair is a new one.
ALTER TABLE pairings ADD COLUMN pairing_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX pairings_pairing_id ON pairings (pairing_id);
ALTER TABLE pairings ADD COLUMN nonce text NOT NULL DEFAULT '';
ALTER TABLE pairings ADD COLUMN release_digest text;  -- of the token this pairing was granted
ALTER TABLE pairings ADD COLUMN requester text;
ALTER TABLE pairings ADD COLUMN releases uuid;  -- the pairing this claim proved it may end
ALTER TABLE pairings DROP CONSTRAINT pairings_status_check;
ALTER TABLE pairings ADD CONSTRAINT pairings_status_check CHECK (status IN
    ('pending', 'approved', 'locked', 'expired', 'unpaired', 'released', 'refused'));
-- One approved pairing per bear, ever at a time: a database constraint, not a hope.
UPDATE pairings p SET status = 'unpaired', unpaired_at = now()
 WHERE status = 'approved' AND EXISTS (SELECT 1 FROM pairings q WHERE q.device_id = p.device_id
   AND q.status = 'approved' AND q.approved_at > p.approved_at);
CREATE UNIQUE INDEX pairings_one_approved ON pairings (device_id) WHERE status = 'approved';

-- The bear's current pairing (NULL: not paired).
ALTER TABLE devices ADD COLUMN pairing_id uuid REFERENCES pairings (pairing_id)
    ON DELETE SET NULL;
UPDATE devices d SET pairing_id = p.pairing_id FROM pairings p
 WHERE p.device_id = d.device_id AND p.status = 'approved';

-- Family scope of what a family's bear sent, and of the consent.
ALTER TABLE turns ADD COLUMN pairing_id uuid;
ALTER TABLE alerts ADD COLUMN pairing_id uuid;
ALTER TABLE consents ADD COLUMN pairing_id uuid;
UPDATE turns t SET pairing_id = d.pairing_id FROM devices d
 WHERE d.device_id = t.device_id AND d.pairing_id IS NOT NULL;
UPDATE alerts a SET pairing_id = d.pairing_id FROM devices d
 WHERE d.device_id = a.device_id AND d.pairing_id IS NOT NULL;
UPDATE consents c SET pairing_id = p.pairing_id FROM pairings p WHERE p.claim_id = c.claim_id;
CREATE INDEX turns_pairing ON turns (pairing_id);
CREATE INDEX alerts_pairing ON alerts (pairing_id);
CREATE INDEX consents_pairing ON consents (pairing_id);

-- Ingest stamps every new turn and alert with its bear's current pairing (no writer change).
CREATE FUNCTION teddy_stamp_pairing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pairing_id IS NULL THEN
        SELECT d.pairing_id INTO NEW.pairing_id FROM devices d WHERE d.device_id = NEW.device_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER turns_stamp_pairing BEFORE INSERT ON turns
    FOR EACH ROW EXECUTE FUNCTION teddy_stamp_pairing();
CREATE TRIGGER alerts_stamp_pairing BEFORE INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION teddy_stamp_pairing();

-- Wrong codes per requester (the approving parent or operator), never fleet-wide.
CREATE TABLE pairing_failures (
    id          bigserial PRIMARY KEY,
    requester   text NOT NULL,
    claim_id    text,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pairing_failures_requester ON pairing_failures (requester, failed_at);
