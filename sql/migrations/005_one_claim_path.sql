-- One claim path: the fallback poller no longer claims (it discovers the ids of visible
-- messages and hands them on like a notification), so every message is claimed by the actor with
-- tasker.pgmq_read_specific_messages inside its batch transaction. The poller's claiming read and
-- the second claim of its copies are gone.
DROP FUNCTION IF EXISTS tasker.pgmq_read_missed(text, integer, integer, integer);
DROP FUNCTION IF EXISTS tasker.pgmq_confirm_claims(text, bigint[], integer[]);
