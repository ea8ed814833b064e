-- Issue 22, the wellbeing inbox: a wellbeing alert carries the exact child line that raised
-- it (quote: sealed with the family's key like turns.text; NULL from older bears or without
-- consent to send conversations), its most urgent category, and the place of that line in
-- the transcript (conversation_id, turn_seq). A family marks an alert seen (one row per
-- alert and family); chooses how it hears of alerts (family_alert_prefs; no row: every
-- "high" e-mailed at once, a daily digest of the rest); and gets at most one digest a day
-- (wellbeing_digests: the row is written in the transaction that sends it).
ALTER TABLE alerts
    ADD COLUMN category        text,
    ADD COLUMN quote           text,
    ADD COLUMN conversation_id text,
    ADD COLUMN turn_seq        bigint,
    ADD COLUMN digest_day      date;

CREATE TABLE alert_seen (
    alert_id  bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    family_id uuid NOT NULL REFERENCES families (family_id) ON DELETE CASCADE,
    parent_id uuid,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, family_id)
);

CREATE TABLE family_alert_prefs (
    family_id  uuid PRIMARY KEY REFERENCES families (family_id) ON DELETE CASCADE,
    immediate  text NOT NULL DEFAULT 'high' CHECK (immediate IN ('high', 'all', 'none')),
    digest     boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE wellbeing_digests (
    family_id uuid NOT NULL REFERENCES families (family_id) ON DELETE CASCADE,
    day       date NOT NULL,
    alerts    integer NOT NULL,
    sent_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (family_id, day)
);

CREATE INDEX alerts_wellbeing_digest ON alerts (pairing_id, raised_at)
    WHERE kind LIKE 'wellbeing.%' AND digest_day IS NULL;
