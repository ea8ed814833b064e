-- The parent app's requests to the fleet service (sync/cloud/fleet_requests.py): the app
-- holds no fleet signing key and no broker password; it inserts one row per command it
-- needs (a narrow set: settings, deletion, unpairing; and approving a pairing code, which
-- has no bear yet), checked against the bear's current pairing in the same
-- INSERT ... SELECT, and the fleet service (`teddy-cloud fleet serve`),
-- woken by NOTIFY fleet_requests, re-checks the holder, signs, sends over its one MQTT link
-- and records the outcome here for the app to read.
CREATE TABLE fleet_requests (
    request_id   bigserial PRIMARY KEY,
    family_id    uuid NOT NULL,
    pairing_id   uuid,
    device_id    text,
    name         text NOT NULL CHECK (name IN ('config', 'delete-data', 'unpair', 'pair')),
    args         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(args) = 'object'),
    ttl_s        double precision CHECK (ttl_s > 0 AND ttl_s <= 604800),
    command_id   text NOT NULL UNIQUE,
    requested_at timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'sending', 'sent', 'refused', 'failed')),
    reason       text,
    done_at      timestamptz,
    result       jsonb,
    CHECK ((name = 'pair') = (pairing_id IS NULL) AND (pairing_id IS NULL) = (device_id IS NULL))
);
CREATE INDEX fleet_requests_pending ON fleet_requests (request_id) WHERE status = 'pending';

CREATE OR REPLACE FUNCTION teddy_fleet_request_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleet_requests', NEW.request_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER fleet_requests_notify AFTER INSERT ON fleet_requests
    FOR EACH ROW EXECUTE FUNCTION teddy_fleet_request_notify();
