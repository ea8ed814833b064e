-- Ingest at full speed with custody (issues 21 and 23): ingest stamps every turn with its
-- bear's current pairing itself, set-wise, from one custody query per batch
-- (sync/cloud/sealing.py), so the per-row trigger of 0007/0009/0010 that looked the pairing
-- up again for every turn goes. Alerts keep theirs (a few rows; ingest stamps them too).
DROP TRIGGER IF EXISTS turns_stamp_pairing ON turns;
