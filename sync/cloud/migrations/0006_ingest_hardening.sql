-- Ingest that no bear can subvert (issue 12): a command's final status is written once and
-- every later result (a replay's refusal, a result for an unknown id) is kept beside it;
-- dead letters expire by age.
CREATE TABLE command_events (
    id          bigserial PRIMARY KEY,
    command_id  text NOT NULL,
    device_id   text NOT NULL,
    known       boolean NOT NULL,
    status      text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    result      jsonb,
    finished_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, command_id, status, finished_at)
);
COMMENT ON COLUMN command_events.known IS
    'whether command_id named a command sent to this device';
CREATE INDEX command_events_command ON command_events (command_id, received_at);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
