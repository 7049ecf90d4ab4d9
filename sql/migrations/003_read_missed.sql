-- tasker.pgmq_read_missed claims like pgmq.read, but only messages that have been visible for at
-- least min_age_ms: fresh messages are being delivered by NOTIFY, so a periodic poll in hybrid
-- mode leaves them alone and picks up only what notification missed (a NOTIFY lost while the
-- listener reconnected, a delayed message that came due, an expired visibility timeout). A
-- message becomes visible at its vt, so "visible for min_age" is vt <= now - min_age.
CREATE OR REPLACE FUNCTION tasker.pgmq_read_missed(queue_name text, vt_seconds integer, qty integer, min_age_ms integer)
RETURNS SETOF tasker.queue_message
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH c AS (SELECT m.msg_id FROM %1$s m
                WHERE m.vt <= clock_timestamp() - make_interval(secs => $3 / 1000.0)
                ORDER BY m.msg_id LIMIT $1 FOR UPDATE SKIP LOCKED)
     UPDATE %1$s q SET vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
     FROM c WHERE q.msg_id = c.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers',
    tasker.queue_table(queue_name)) USING qty, vt_seconds, min_age_ms;
END $$;
