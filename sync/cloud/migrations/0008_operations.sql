-- Operations (issue 15): the backups teddy-cloud backup took (for the backup-age gauge and
-- alert), and an index that keeps the fleet gauges' open-alerts query cheap.
CREATE TABLE backup_runs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('full', 'diff', 'incr')),
    label       text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    ok          boolean NOT NULL,
    error       text
);
CREATE INDEX backup_runs_ok ON backup_runs (ok, finished_at);
CREATE INDEX alerts_open ON alerts (kind, severity) WHERE cleared_at IS NULL;
