-- Notifications: which alert events were fanned out, one delivery per (event, channel),
-- and a log of every attempt. Operational data only: no transcript ever reaches these tables.
CREATE TABLE notification_events (
    alert_id      bigint NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    event         text NOT NULL CHECK (event IN ('raised', 'cleared')),
    fanned_out_at timestamptz NOT NULL DEFAULT now(),
    channels      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (alert_id, event)
);

CREATE TABLE notification_deliveries (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    event           text NOT NULL CHECK (event IN ('raised', 'cleared')),
    channel         text NOT NULL,
    dedupe_key      text NOT NULL,
    status          text NOT NULL CHECK (status IN
                        ('pending', 'retrying', 'delivered', 'failed', 'deduplicated',
                         'rate_limited')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (alert_id, event, channel)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX notification_deliveries_recent ON notification_deliveries (channel, created_at);
CREATE INDEX notification_deliveries_dedupe ON notification_deliveries (channel, dedupe_key, created_at);

CREATE TABLE notification_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES notification_deliveries(id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    error        text,
    duration_ms  integer NOT NULL,
    retry_in_s   double precision
);
CREATE INDEX notification_attempts_delivery ON notification_attempts (delivery_id);
