-- Parents' e-mail addresses in the fleet tables, like the parent app's (0012): found by a
-- keyed hash (parent_email_hash), parent_email sealed for display (sync/cloud/emails.py).
-- Rows written before are sealed by emails.migrate when a process with the cloud key starts
-- (the parent app, teddy-cloud fleet, notify run); without any cloud key (development) the
-- address stays readable and the hash is unkeyed, and the log says so.
ALTER TABLE pairings ADD COLUMN parent_email_hash bytea;
ALTER TABLE consents ADD COLUMN parent_email_hash bytea;
CREATE INDEX pairings_parent_email_hash ON pairings (parent_email_hash)
    WHERE parent_email_hash IS NOT NULL;
DROP INDEX IF EXISTS consents_parent;
CREATE INDEX consents_parent_email_hash ON consents (parent_email_hash) WHERE revoked_at IS NULL;
-- A release request is mailed to the holding family by a process that can open their
-- addresses: at once where the claim was approved with the cloud key, else by the notifier
-- (teddy-cloud notify run), which holds it; told_at says it went.
ALTER TABLE custody_releases ADD COLUMN told_at timestamptz;
