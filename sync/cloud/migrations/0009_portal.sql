-- The parent app: parents, sign-in links, sessions, families (a parent's pairings and an
-- invited second parent), consent records against a versioned notice, per-family data keys,
-- the family's retention, and deletions awaiting the bear's confirmation.

-- Family scope columns, defined exactly as migration 0007 (identity) defines them; IF NOT
-- EXISTS so this file works with or without it.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
ALTER TABLE pairings ADD COLUMN IF NOT EXISTS pairing_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX IF NOT EXISTS pairings_pairing_id ON pairings (pairing_id);
ALTER TABLE devices ADD COLUMN IF NOT EXISTS pairing_id uuid REFERENCES pairings (pairing_id)
    ON DELETE SET NULL;
ALTER TABLE turns ADD COLUMN IF NOT EXISTS pairing_id uuid;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS pairing_id uuid;
ALTER TABLE consents ADD COLUMN IF NOT EXISTS pairing_id uuid;
CREATE INDEX IF NOT EXISTS turns_pairing ON turns (pairing_id);
CREATE INDEX IF NOT EXISTS alerts_pairing ON alerts (pairing_id);
CREATE INDEX IF NOT EXISTS consents_pairing ON consents (pairing_id);
-- Ingest stamps every new turn and alert with its bear's current pairing (as in 0007).
CREATE OR REPLACE FUNCTION teddy_stamp_pairing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pairing_id IS NULL THEN
        SELECT d.pairing_id INTO NEW.pairing_id FROM devices d WHERE d.device_id = NEW.device_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER turns_stamp_pairing BEFORE INSERT ON turns
    FOR EACH ROW EXECUTE FUNCTION teddy_stamp_pairing();
CREATE OR REPLACE TRIGGER alerts_stamp_pairing BEFORE INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION teddy_stamp_pairing();
CREATE INDEX IF NOT EXISTS turns_device_created ON turns (device_id, created_at);

CREATE TABLE families (
    family_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    retention_days integer NOT NULL DEFAULT 30 CHECK (retention_days BETWEEN 1 AND 30),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE parents (
    parent_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text NOT NULL,
    family_id  uuid NOT NULL REFERENCES families (family_id),
    role       text NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX parents_email ON parents (lower(email));
CREATE INDEX parents_family ON parents (family_id);

-- One-time sign-in links: only a SHA-256 of the token is kept.
CREATE TABLE signin_links (
    token_hash  bytea PRIMARY KEY,
    email       text NOT NULL,
    client      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX signin_links_email ON signin_links (lower(email), created_at);
CREATE INDEX signin_links_client ON signin_links (client, created_at);

-- Server-side sessions (the cookie holds a random token; only its hash is kept).
CREATE TABLE portal_sessions (
    token_hash  bytea PRIMARY KEY,
    parent_id   uuid NOT NULL REFERENCES parents (parent_id) ON DELETE CASCADE,
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX portal_sessions_parent ON portal_sessions (parent_id);

CREATE TABLE family_invites (
    invite_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id   uuid NOT NULL REFERENCES families (family_id) ON DELETE CASCADE,
    email       text NOT NULL,
    invited_by  uuid NOT NULL REFERENCES parents (parent_id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    accepted_at timestamptz
);
CREATE INDEX family_invites_email ON family_invites (lower(email)) WHERE accepted_at IS NULL;

-- Which family each pairing belongs to (the scope of every family query).
CREATE TABLE family_pairings (
    pairing_id uuid PRIMARY KEY REFERENCES pairings (pairing_id) ON DELETE CASCADE,
    family_id  uuid NOT NULL REFERENCES families (family_id) ON DELETE CASCADE,
    child_name text NOT NULL DEFAULT '',
    added_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX family_pairings_family ON family_pairings (family_id);

-- Verifiable consent: who, when, which notice version, which scopes, how verified.
CREATE TABLE consent_records (
    record_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id      uuid NOT NULL REFERENCES families (family_id) ON DELETE CASCADE,
    pairing_id     uuid,
    parent_id      uuid NOT NULL REFERENCES parents (parent_id) ON DELETE CASCADE,
    parent_email   text NOT NULL,
    notice_version text NOT NULL,
    notice_sha256  text NOT NULL,
    scopes         text[] NOT NULL,
    verified_by    text NOT NULL,
    client         text NOT NULL,
    granted_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
CREATE INDEX consent_records_family ON consent_records (family_id);

-- Per-family (per-pairing) data keys, wrapped by the cloud key; deleting the row shreds
-- every transcript sealed under it, in backups too.
CREATE TABLE family_keys (
    pairing_id  uuid PRIMARY KEY,
    key_id      uuid NOT NULL UNIQUE,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Deletions the parent asked for, and the signed command that carries them to the bear.
CREATE TABLE portal_deletions (
    deletion_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id       uuid NOT NULL REFERENCES families (family_id) ON DELETE CASCADE,
    pairing_id      uuid NOT NULL,
    scope           text NOT NULL,
    command_id      text,
    cloud_turns     integer NOT NULL DEFAULT 0,
    requested_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX portal_deletions_family ON portal_deletions (family_id, requested_at DESC);
