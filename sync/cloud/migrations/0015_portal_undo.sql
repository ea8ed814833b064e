-- Issue 22: deleting a conversation or a day in the parent app waits a short undo window.
-- A scheduled deletion is a portal_deletions row with due_at set and done_at NULL: nothing
-- is deleted yet (undo removes the row); at due_at the cloud rows of conversation_ids are
-- deleted and the signed delete-data command is sent, in one transaction that sets done_at.
-- Rows made before this migration (and "everything", revocation) are done at once: due_at
-- stays NULL.
ALTER TABLE portal_deletions
    ADD COLUMN due_at           timestamptz,
    ADD COLUMN done_at          timestamptz,
    ADD COLUMN conversation_ids text[];
CREATE INDEX portal_deletions_due ON portal_deletions (due_at)
    WHERE due_at IS NOT NULL AND done_at IS NULL;
