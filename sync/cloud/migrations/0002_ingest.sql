-- Ingest at scale: the bear's own alert id (a raise and its clear share it), the health
-- rule that raised it, lookups by presence, and dead letters findable by device.
ALTER TABLE alerts ADD COLUMN device_alert_id text;
ALTER TABLE alerts ADD COLUMN rule text;
CREATE UNIQUE INDEX alerts_device_alert ON alerts (device_id, device_alert_id);
CREATE INDEX devices_online ON devices (online, last_seen);
ALTER TABLE dead_letters ADD COLUMN device_id text;
CREATE INDEX dead_letters_device ON dead_letters (device_id, received_at);
