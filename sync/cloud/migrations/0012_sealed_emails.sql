-- Parents' e-mail addresses in the parent app's tables: found by a keyed hash, stored sealed
-- (sync/cloud/emails.py; the app seals the rows written before this when it starts).
-- The key behind both, wrapped by the cloud key (one row per cloud key ever configured).
CREATE TABLE email_keys (
    key_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE parents ADD COLUMN email_hash bytea;
ALTER TABLE signin_links ADD COLUMN email_hash bytea;
ALTER TABLE family_invites ADD COLUMN email_hash bytea;
DROP INDEX IF EXISTS parents_email;
CREATE UNIQUE INDEX parents_email_hash ON parents (email_hash);
DROP INDEX IF EXISTS signin_links_email;
CREATE INDEX signin_links_email_hash ON signin_links (email_hash, created_at);
DROP INDEX IF EXISTS family_invites_email;
CREATE INDEX family_invites_email_hash ON family_invites (email_hash)
    WHERE accepted_at IS NULL;
