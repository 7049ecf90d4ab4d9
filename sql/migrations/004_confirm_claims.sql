-- tasker.pgmq_confirm_claims makes claims taken outside a transaction (the poller's pgmq.read)
-- safe to act on inside one: for each (msg_id, read_ct) it locks the message, and only if
-- read_ct is still the one the claim produced. A higher read_ct means the visibility timeout ran
-- out and someone claimed the message again: that claimant owns it now, and the stale claim must
-- not run. The lock (held until the caller's transaction ends) keeps anyone else from claiming
-- or deleting the message meanwhile, whatever its vt; rows another transaction holds are
-- skipped, not waited for. Returns the confirmed ids.
CREATE OR REPLACE FUNCTION tasker.pgmq_confirm_claims(queue_name text, msg_ids bigint[], read_cts integer[])
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  IF cardinality(msg_ids) <> cardinality(read_cts) THEN
    RAISE EXCEPTION 'msg_ids and read_cts differ in length (% vs %)', cardinality(msg_ids), cardinality(read_cts)
      USING ERRCODE = '22023';
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT m.msg_id FROM %1$s m
     JOIN unnest($1, $2) AS claim(msg_id, read_ct) ON claim.msg_id = m.msg_id AND claim.read_ct = m.read_ct
     ORDER BY m.msg_id FOR UPDATE OF m SKIP LOCKED',
    tasker.queue_table(queue_name)) USING msg_ids, read_cts;
END $$;
