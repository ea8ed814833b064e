-- Over-the-air updates: published releases, staged rollouts, per-bear update state.
CREATE TABLE releases (
    version         text PRIMARY KEY,
    url             text NOT NULL UNIQUE,
    manifest_sha256 text NOT NULL,
    floor           text NOT NULL,
    complete        boolean NOT NULL,
    total_bytes     bigint NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollouts (
    id                bigserial PRIMARY KEY,
    release_version   text NOT NULL REFERENCES releases(version),
    release_url       text NOT NULL,
    stages            real[] NOT NULL,
    pause_on_failures integer NOT NULL CHECK (pause_on_failures >= 1),
    stage_timeout_s   real NOT NULL,
    state             text NOT NULL DEFAULT 'running'
                      CHECK (state IN ('running', 'halted', 'completed', 'aborted')),
    current_stage     integer NOT NULL DEFAULT 0,
    reason            text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX rollouts_one_running ON rollouts ((true)) WHERE state = 'running';

CREATE TABLE rollout_targets (
    rollout_id  bigint NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    device_id   text NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
    stage       integer NOT NULL,
    command_id  text,
    sent_at     timestamptz,
    outcome     text NOT NULL DEFAULT 'waiting'
                CHECK (outcome IN ('waiting', 'sent', 'deferred', 'installed', 'already_current',
                                   'rolled_back', 'refused', 'failed', 'timeout')),
    reason      text NOT NULL DEFAULT '',
    reported_at timestamptz,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_targets_stage ON rollout_targets (rollout_id, stage);

-- One row per bear: what it runs and what its last update did (teddy-cloud fleet devices).
CREATE TABLE device_updates (
    device_id      text PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
    version        text,
    target_version text,
    state          text NOT NULL,
    reason         text NOT NULL DEFAULT '',
    rollout_id     bigint REFERENCES rollouts(id) ON DELETE SET NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Every reported update step, as the bear journaled it.
CREATE TABLE update_events (
    id          bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
    version     text,
    outcome     text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    rollout_id  bigint REFERENCES rollouts(id) ON DELETE SET NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    reported_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX update_events_device ON update_events (device_id, reported_at DESC);
