-- Two robustness rules (docs/protocol.md, "Claiming" and "SQL the project installs"):
--
-- 1. A message body larger than the consumer's limit never enters the consumer. The claim
--    function takes the limit; a claimed message over it is dead-lettered right here, in the
--    claiming transaction (its original body goes into the dead letter, its source row is
--    deleted), and is returned with a NULL body and its size, so the consumer only counts it.
-- 2. Starting a consumer takes no lock on a queue that is already set up: creating a queue or
--    its notify trigger takes locks that wait behind every open transaction on that queue and
--    make every later send and read wait behind them. ensure_queue looks at the catalogs first.

CREATE TYPE tasker.claimed_message AS (
  msg_id bigint, read_ct integer, enqueued_at timestamptz, vt timestamptz, message jsonb,
  headers jsonb, size bigint);

-- body_size is the size of a body as text, computed only for bodies whose stored size could be
-- over the smallest allowed limit (1 KiB): converting every small body to text would cost more
-- than the claim itself.
CREATE OR REPLACE FUNCTION tasker.body_size(body jsonb)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_column_size(body) > 1024 THEN octet_length(body::text) ELSE pg_column_size(body) END
$$;

CREATE OR REPLACE FUNCTION tasker.pgmq_read_specific_messages(
  queue_name text, msg_ids bigint[], vt_seconds integer, max_bytes bigint)
RETURNS SETOF tasker.claimed_message
LANGUAGE plpgsql AS $$
DECLARE
  m tasker.claimed_message;
BEGIN
  FOR m IN EXECUTE format(
    'WITH c AS (SELECT x.msg_id FROM %1$s x WHERE x.msg_id = ANY($1) AND x.vt <= clock_timestamp()
                ORDER BY x.msg_id FOR UPDATE SKIP LOCKED)
     UPDATE %1$s q SET vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
     FROM c WHERE q.msg_id = c.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers, tasker.body_size(q.message)',
    tasker.queue_table(queue_name)) USING msg_ids, vt_seconds
  LOOP
    IF m.size > max_bytes THEN
      PERFORM pgmq.send('orchestration_dlq', jsonb_build_object(
        'source_queue', queue_name, 'source_msg_id', m.msg_id, 'read_ct', m.read_ct,
        'reason', 'message_too_large',
        'error', format('body of %s bytes exceeds CONSUMER_MAX_MESSAGE_BYTES (%s bytes)', m.size, max_bytes),
        'message', m.message,
        'dead_lettered_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')));
      EXECUTE format('DELETE FROM %s WHERE msg_id = $1', tasker.queue_table(queue_name)) USING m.msg_id;
      m.message := NULL;
    END IF;
    RETURN NEXT m;
  END LOOP;
END $$;

-- enable_queue_notify now installs the trigger only when it is missing or notifies another
-- channel.
CREATE OR REPLACE FUNCTION tasker.enable_queue_notify(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  channel text := tasker.queue_notify_channel(queue_name);
BEGIN
  -- pg_notify rejects channel names over 63 bytes at insert time; refuse now instead.
  IF octet_length(channel) > 63 THEN
    RAISE EXCEPTION 'notify channel % for queue % is longer than 63 bytes', channel, queue_name
      USING ERRCODE = '22023';
  END IF;
  IF EXISTS (
    SELECT 1 FROM pg_trigger t
    WHERE t.tgrelid = to_regclass(tasker.queue_table(queue_name)) AND t.tgname = 'tasker_notify_insert'
      AND NOT t.tgisinternal
      AND encode(t.tgargs, 'escape') = channel || '\000') THEN
    RETURN;
  END IF;
  EXECUTE format(
    'CREATE OR REPLACE TRIGGER tasker_notify_insert AFTER INSERT ON %s
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
       EXECUTE FUNCTION tasker.notify_queue_insert(%L)',
    tasker.queue_table(queue_name), channel);
END $$;

-- ensure_queue creates a queue and its notify trigger unless both exist already.
CREATE OR REPLACE FUNCTION tasker.ensure_queue(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass(tasker.queue_table(queue_name)) IS NULL THEN
    PERFORM pgmq.create(queue_name);
  END IF;
  PERFORM tasker.enable_queue_notify(queue_name);
END $$;
