-- The system of record: bears, their turns, and what failed validation.
CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    online      boolean NOT NULL DEFAULT false,
    firmware    text NOT NULL DEFAULT '',
    boot_time   timestamptz
);

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
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX turns_conversation ON turns (device_id, conversation_id);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    payload_size integer NOT NULL,
    reason      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id          bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
    kind        text NOT NULL,
    severity    text NOT NULL,
    message     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    raised_at   timestamptz NOT NULL,
    cleared_at  timestamptz
);

CREATE TABLE health_samples (
    device_id   text NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
    sampled_at  timestamptz NOT NULL,
    sample      jsonb NOT NULL,
    PRIMARY KEY (device_id, sampled_at)
);
