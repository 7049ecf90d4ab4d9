-- Claiming and notification on top of PGMQ, plus the orchestration queues (docs/protocol.md,
-- "SQL the project installs").
-- Written for any PGMQ from 1.5 on (extension, SQL-only install, or the bundled schema): it only
-- relies on the documented q_<queue> table columns and pgmq.create.

CREATE SCHEMA IF NOT EXISTS tasker;

-- The claimed-message row. Our own type rather than pgmq.message_record, whose columns differ
-- between PGMQ versions (1.10 added last_read_at).
CREATE TYPE tasker.queue_message AS (
  msg_id bigint, read_ct integer, enqueued_at timestamptz, vt timestamptz, message jsonb, headers jsonb);

-- queue_table returns the quoted name of a queue's table after checking the queue name, so that
-- no caller can reach another relation through string building.
CREATE OR REPLACE FUNCTION tasker.queue_table(queue_name text, prefix text DEFAULT 'q_')
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF queue_name IS NULL OR queue_name !~ '^[a-z0-9_]+$' OR length(queue_name) > 47 THEN
    RAISE EXCEPTION 'invalid queue name %: want [a-z0-9_], at most 47 characters', quote_literal(coalesce(queue_name, 'NULL'))
      USING ERRCODE = '22023';
  END IF;
  RETURN format('pgmq.%I', prefix || queue_name);
END $$;

-- pgmq_read_specific_message claims one message by id: only when it is visible now and not
-- locked by another claimer (skip, never wait). Zero rows is the normal "already claimed,
-- deleted or not yet visible" outcome.
CREATE OR REPLACE FUNCTION tasker.pgmq_read_specific_message(queue_name text, msg_id bigint, vt_seconds integer)
RETURNS SETOF tasker.queue_message
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH c AS (SELECT m.msg_id FROM %1$s m WHERE m.msg_id = $1 AND m.vt <= clock_timestamp() FOR UPDATE SKIP LOCKED)
     UPDATE %1$s q SET vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
     FROM c WHERE q.msg_id = c.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers',
    tasker.queue_table(queue_name)) USING msg_id, vt_seconds;
END $$;

-- pgmq_read_specific_messages is the batch form: it claims whichever of msg_ids are claimable
-- and returns them in id order.
CREATE OR REPLACE FUNCTION tasker.pgmq_read_specific_messages(queue_name text, msg_ids bigint[], vt_seconds integer)
RETURNS SETOF tasker.queue_message
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH c AS (SELECT m.msg_id FROM %1$s m WHERE m.msg_id = ANY($1) AND m.vt <= clock_timestamp()
                ORDER BY m.msg_id FOR UPDATE SKIP LOCKED)
     UPDATE %1$s q SET vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
     FROM c WHERE q.msg_id = c.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers',
    tasker.queue_table(queue_name)) USING msg_ids, vt_seconds;
END $$;

-- queue_notify_channel maps a queue to its NOTIFY channel: the orchestration queues share
-- pgmq_message_ready.orchestration, worker_<ns>_queue announces on pgmq_message_ready.<ns>.
CREATE OR REPLACE FUNCTION tasker.queue_notify_channel(queue_name text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT 'pgmq_message_ready.' || CASE
    WHEN queue_name LIKE 'orchestration\_%' THEN 'orchestration'
    WHEN queue_name ~ '^worker_[a-z][a-z0-9_]*_queue$' THEN substring(queue_name FROM '^worker_(.*)_queue$')
    ELSE queue_name END
$$;

-- notify_queue_insert is a statement-level trigger: one pg_notify per INSERT statement (NOTIFY
-- takes a global lock at commit, so one per row would cap throughput). Delayed messages are not
-- announced; the poller finds them when they are due.
CREATE OR REPLACE FUNCTION tasker.notify_queue_insert()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids bigint[];
  qname text := substr(TG_TABLE_NAME, 3);
  payload text;
BEGIN
  SELECT array_agg(n.msg_id ORDER BY n.msg_id) INTO ids FROM new_rows n WHERE n.vt <= clock_timestamp();
  IF ids IS NULL THEN
    RETURN NULL;
  END IF;
  IF cardinality(ids) = 1 THEN
    payload := json_build_object('event_type', 'message_ready', 'queue_name', qname, 'msg_id', ids[1])::text;
  ELSE
    payload := json_build_object('event_type', 'batch_ready', 'queue_name', qname, 'msg_ids', ids)::text;
    IF octet_length(payload) >= 8000 THEN
      payload := json_build_object('event_type', 'queue_ready', 'queue_name', qname)::text;
    END IF;
  END IF;
  PERFORM pg_notify(TG_ARGV[0], payload);
  RETURN NULL;
END $$;

-- enable_queue_notify installs (or refreshes) the notify trigger on a queue's table.
CREATE OR REPLACE FUNCTION tasker.enable_queue_notify(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- pg_notify rejects channel names over 63 bytes at insert time; refuse now instead.
  IF octet_length(tasker.queue_notify_channel(queue_name)) > 63 THEN
    RAISE EXCEPTION 'notify channel % for queue % is longer than 63 bytes',
      tasker.queue_notify_channel(queue_name), queue_name USING ERRCODE = '22023';
  END IF;
  EXECUTE format(
    'CREATE OR REPLACE TRIGGER tasker_notify_insert AFTER INSERT ON %s
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
       EXECUTE FUNCTION tasker.notify_queue_insert(%L)',
    tasker.queue_table(queue_name), tasker.queue_notify_channel(queue_name));
END $$;

CREATE OR REPLACE FUNCTION tasker.disable_queue_notify(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS tasker_notify_insert ON %s', tasker.queue_table(queue_name));
END $$;

SELECT pgmq.create('orchestration_task_requests');
SELECT pgmq.create('orchestration_step_results');
SELECT pgmq.create('orchestration_task_finalizations');
SELECT pgmq.create('orchestration_dlq');
SELECT tasker.enable_queue_notify('orchestration_task_requests');
SELECT tasker.enable_queue_notify('orchestration_step_results');
SELECT tasker.enable_queue_notify('orchestration_task_finalizations');
