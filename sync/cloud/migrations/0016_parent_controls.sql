-- Issue 22, controls a parent knows. Nothing here is read by an older app.
-- Keys of its desired config a bear's software does not know (it refused them as "not a
-- setting"): withheld from what is signed for it while it runs that same software
-- (unknown_firmware), so an older bear keeps taking every other setting.
ALTER TABLE device_config
    ADD COLUMN unknown_keys     jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN unknown_firmware text;
-- The family's time zone (an IANA name such as Europe/London; NULL: portal.timezone).
ALTER TABLE families ADD COLUMN timezone text CHECK (timezone IS NULL OR length(timezone)
    BETWEEN 1 AND 64);
-- A bear the family no longer holds and removed from its dashboard: its child name is
-- cleared, its transcripts and key are gone; consent and deletion records stay.
ALTER TABLE family_pairings ADD COLUMN removed_at timestamptz;
