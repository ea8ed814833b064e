-- Fleet operations: pairing claims, parental consents, signed commands, desired config.
CREATE TABLE pairings (
    claim_id        text PRIMARY KEY,
    device_id       text NOT NULL,
    code_digest     text NOT NULL,
    public_key      text NOT NULL,
    firmware        text NOT NULL DEFAULT '',
    requested_at    timestamptz NOT NULL,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'approved', 'locked', 'expired', 'unpaired')),
    parent_email    text,
    mqtt_username   text,
    approved_at     timestamptz,
    unpaired_at     timestamptz
);
CREATE INDEX pairings_device ON pairings (device_id, status);

CREATE TABLE consents (
    id           bigserial PRIMARY KEY,
    device_id    text NOT NULL,
    parent_email text NOT NULL,
    scopes       text[] NOT NULL,
    claim_id     text REFERENCES pairings(claim_id),
    granted_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX consents_parent ON consents (parent_email) WHERE revoked_at IS NULL;
CREATE INDEX consents_device ON consents (device_id) WHERE revoked_at IS NULL;

CREATE TABLE commands (
    id          text PRIMARY KEY,
    device_id   text NOT NULL,
    name        text NOT NULL,
    args        jsonb NOT NULL DEFAULT '{}',
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'sent'
                CHECK (status IN ('sent', 'done', 'rejected', 'failed')),
    reason      text NOT NULL DEFAULT '',
    result      jsonb,
    finished_at timestamptz
);
CREATE INDEX commands_device ON commands (device_id, issued_at DESC);

CREATE TABLE device_config (
    device_id     text PRIMARY KEY,
    version       integer NOT NULL,
    desired       jsonb NOT NULL DEFAULT '{}',
    reported      jsonb,
    reported_at   timestamptz
);
