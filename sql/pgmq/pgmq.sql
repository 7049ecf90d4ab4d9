-- The consumer's bundled PGMQ-compatible schema, version 2.
--
-- Installed by `consumer migrate` only when the database has neither the pgmq extension nor a
-- SQL-only PGMQ install. Written for this project (not copied from PGMQ), it gives stock PGMQ
-- clients what PGMQ 1.11 gives them: the same queue and archive tables (with last_read_at, the
-- 1.10 shape), the same pgmq.message_record, the same queue-name rules and error wording, and
-- the same signatures and semantics for every non-partitioned queue function. Partitioned
-- queues, FIFO groups, topics and PGMQ's own insert notifications are refused with SQLSTATE
-- 0A000 (feature_not_supported). docs/pgmq-compatibility.md lists every function and column.
--
-- The script is safe to run again: it upgrades a database installed by any earlier bundled
-- version in place (see the upgrade block below) and never drops or rewrites queue data.
-- pgmq.bundled_version records the versions applied.

CREATE SCHEMA IF NOT EXISTS pgmq;

CREATE TABLE IF NOT EXISTS pgmq.bundled_version (
  version    integer     PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);

-- Upgrades from earlier bundled versions, each guarded by the version it brings. Version 1
-- predates pgmq.bundled_version: a pgmq.meta without a version row is version 1.
DO $$
DECLARE
  from_version integer := (SELECT max(version) FROM pgmq.bundled_version);
  q record;
BEGIN
  IF from_version IS NULL THEN
    from_version := CASE WHEN to_regclass('pgmq.meta') IS NULL THEN 2 ELSE 1 END;
  END IF;
  IF from_version < 2 THEN
    -- 2: the PGMQ 1.10 shape. Like PGMQ's own 1.10 upgrade, last_read_at is appended to each
    -- existing table (every function here names its columns, so their order does not matter).
    FOR q IN SELECT m.queue_name FROM pgmq.meta m LOOP
      EXECUTE format('ALTER TABLE IF EXISTS pgmq.%I ADD COLUMN IF NOT EXISTS last_read_at timestamptz', 'q_' || q.queue_name);
      EXECUTE format('ALTER TABLE IF EXISTS pgmq.%I ADD COLUMN IF NOT EXISTS last_read_at timestamptz', 'a_' || q.queue_name);
    END LOOP;
    -- The record gains last_read_at after enqueued_at; this drops read and set_vt, which return
    -- it and are created again below.
    DROP TYPE pgmq.message_record CASCADE;
    DROP FUNCTION IF EXISTS pgmq._table_for(text, text);
    DROP FUNCTION IF EXISTS pgmq._send_sql(text);
  END IF;
END $$;

CREATE TABLE IF NOT EXISTS pgmq.meta (
  queue_name     varchar     NOT NULL UNIQUE,
  is_partitioned boolean     NOT NULL DEFAULT false,
  is_unlogged    boolean     NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
  IF to_regtype('pgmq.message_record') IS NULL THEN
    CREATE TYPE pgmq.message_record AS (
      msg_id bigint, read_ct integer, enqueued_at timestamptz, last_read_at timestamptz, vt timestamptz,
      message jsonb, headers jsonb);
  END IF;
  IF to_regtype('pgmq.queue_record') IS NULL THEN
    CREATE TYPE pgmq.queue_record AS (
      queue_name varchar, is_partitioned boolean, is_unlogged boolean, created_at timestamptz);
  END IF;
  IF to_regtype('pgmq.metrics_result') IS NULL THEN
    CREATE TYPE pgmq.metrics_result AS (
      queue_name text, queue_length bigint, newest_msg_age_sec integer, oldest_msg_age_sec integer,
      total_messages bigint, scrape_time timestamptz, queue_visible_length bigint);
  END IF;
END $$;

-- As PGMQ does, monitoring roles may read every queue.
GRANT USAGE ON SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA pgmq TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON TABLES TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON SEQUENCES TO pg_monitor;

------------------------------------------------------------------------------------------------
-- Queue names. PGMQ accepts any name without $, ;, -- or a quote, folds it to lower case for the
-- table names (q_<name>, a_<name>) and quotes them, so "My-Queue" lives in pgmq."q_my-queue".
-- pgmq.meta keeps the name as given. Only queue creation checks the length.
------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF queue_name ~ '\$|;|--|''' THEN
    RAISE EXCEPTION 'queue name contains invalid characters: $, ;, --, or \''';
  END IF;
  RETURN lower(prefix || '_' || queue_name);
END $$;

-- 47 = 63 (PostgreSQL's identifier limit) - 16 (the longest prefix PGMQ puts on a queue name).
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF length(queue_name) > 47 THEN
    RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters';
  END IF;
END $$;

-- Serializes creating and dropping one queue (IF NOT EXISTS alone races on the catalog).
CREATE OR REPLACE FUNCTION pgmq.acquire_queue_lock(queue_name text)
RETURNS void LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(hashtext('pgmq.queue_' || queue_name))
$$;

------------------------------------------------------------------------------------------------
-- Queues
------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq._create_queue(queue_name text, unlogged boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  qtable text := pgmq.format_table_name(queue_name, 'q');
  atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
  PERFORM pgmq.validate_queue_name(queue_name);
  PERFORM pgmq.acquire_queue_lock(queue_name);
  EXECUTE format(
    'CREATE %s TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       last_read_at timestamptz,
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb)', CASE WHEN unlogged THEN 'UNLOGGED' ELSE '' END, qtable);
  -- The archive is logged even for an unlogged queue, as in PGMQ.
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint PRIMARY KEY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       last_read_at timestamptz,
       archived_at timestamptz NOT NULL DEFAULT now(),
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb)', atable);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', qtable || '_vt_idx', qtable);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)', 'archived_at_idx_' || queue_name, atable);
  INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
  VALUES (_create_queue.queue_name, false, unlogged)
  ON CONFLICT DO NOTHING;
END $$;

CREATE OR REPLACE FUNCTION pgmq.create(queue_name text)
RETURNS void LANGUAGE sql AS $$ SELECT pgmq._create_queue(queue_name, false) $$;

CREATE OR REPLACE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void LANGUAGE sql AS $$ SELECT pgmq._create_queue(queue_name, false) $$;

CREATE OR REPLACE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void LANGUAGE sql AS $$ SELECT pgmq._create_queue(queue_name, true) $$;

-- drop_queue drops the queue and its archive; false (with a notice) when there is no such queue.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  qtable text := pgmq.format_table_name(queue_name, 'q');
  atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
  PERFORM pgmq.acquire_queue_lock(queue_name);
  IF to_regclass(format('pgmq.%I', qtable)) IS NULL THEN
    RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
    RETURN false;
  END IF;
  EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', qtable);
  EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', atable);
  DELETE FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
  RETURN true;
END $$;

-- The two-argument form is deprecated in PGMQ and, as there, always returns true.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead';
  PERFORM pgmq.drop_queue(queue_name);
  RETURN true;
END $$;

-- purge_queue empties the queue (not its archive) and returns how many messages it removed. The
-- lock comes first so that the count is exactly what TRUNCATE removes.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  qtable text := pgmq.format_table_name(queue_name, 'q');
  n bigint;
BEGIN
  EXECUTE format('LOCK TABLE pgmq.%I IN ACCESS EXCLUSIVE MODE', qtable);
  EXECUTE format('SELECT count(*) FROM pgmq.%I', qtable) INTO n;
  EXECUTE format('TRUNCATE TABLE pgmq.%I', qtable);
  RETURN n;
END $$;

CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record LANGUAGE sql STABLE AS $$
  SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at FROM pgmq.meta m
  ORDER BY m.created_at, m.queue_name
$$;

-- Archive tables have never been extension members here: a no-op, warning as PGMQ 1.11 does.
CREATE OR REPLACE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE WARNING 'detach_archive(queue_name) is deprecated and is a no-op. It will be removed in PGMQ v2.0. Archive tables are no longer member objects.';
END $$;

------------------------------------------------------------------------------------------------
-- Sending. Every form inserts directly (no form calls another): sending is the hottest path
-- there is, and each layer would cost a function call and a materialized result. A delay is
-- either seconds from now or the timestamp at which the message becomes visible.
------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING delay, msg, headers;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING clock_timestamp() + make_interval(secs => delay), msg, headers;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING clock_timestamp(), msg, headers;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('INSERT INTO pgmq.%I (vt, message) VALUES ($1, $2) RETURNING msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING clock_timestamp() + make_interval(secs => delay), msg;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('INSERT INTO pgmq.%I (vt, message) VALUES ($1, $2) RETURNING msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING delay, msg;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('INSERT INTO pgmq.%I (vt, message) VALUES ($1, $2) RETURNING msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING clock_timestamp(), msg;
END $$;

-- A batch must not be empty, and headers, when given, come one per message (PGMQ 1.11's rules
-- and wording).
CREATE OR REPLACE FUNCTION pgmq._validate_batch_params(msgs jsonb[], headers jsonb[])
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF msgs IS NULL OR array_length(msgs, 1) IS NULL THEN
    RAISE EXCEPTION 'msgs cannot be NULL or empty';
  END IF;
  IF headers IS NOT NULL AND coalesce(array_length(headers, 1), 0) <> array_length(msgs, 1) THEN
    RAISE EXCEPTION 'headers array length (%) must match msgs array length (%)',
      coalesce(array_length(headers, 1), 0), array_length(msgs, 1);
  END IF;
END $$;

-- _send_batch_sql is the INSERT of every send_batch form: messages $2 in order, headers $3[i]
-- (NULL for none), visible from $1. It returns the ids in message order.
CREATE OR REPLACE FUNCTION pgmq._send_batch_sql(queue_name text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT format(
    'INSERT INTO pgmq.%I (vt, message, headers)
     SELECT $1, m.msg, $3[m.ord] FROM unnest($2) WITH ORDINALITY AS m(msg, ord) ORDER BY m.ord
     RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'))
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._validate_batch_params(msgs, headers);
  RETURN QUERY EXECUTE pgmq._send_batch_sql(queue_name) USING delay, msgs, headers;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._validate_batch_params(msgs, headers);
  RETURN QUERY EXECUTE pgmq._send_batch_sql(queue_name)
    USING clock_timestamp() + make_interval(secs => delay), msgs, headers;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._validate_batch_params(msgs, headers);
  RETURN QUERY EXECUTE pgmq._send_batch_sql(queue_name) USING clock_timestamp(), msgs, headers;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._validate_batch_params(msgs, NULL);
  RETURN QUERY EXECUTE pgmq._send_batch_sql(queue_name)
    USING clock_timestamp() + make_interval(secs => delay), msgs, NULL::jsonb[];
END $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._validate_batch_params(msgs, NULL);
  RETURN QUERY EXECUTE pgmq._send_batch_sql(queue_name) USING delay, msgs, NULL::jsonb[];
END $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._validate_batch_params(msgs, NULL);
  RETURN QUERY EXECUTE pgmq._send_batch_sql(queue_name) USING clock_timestamp(), msgs, NULL::jsonb[];
END $$;

------------------------------------------------------------------------------------------------
-- Reading. Readers claim visible messages oldest first with FOR UPDATE SKIP LOCKED, so two
-- readers never get the same message and never wait for each other. A read hides a message for
-- vt seconds, adds one to read_ct and sets last_read_at. Results come in msg_id order.
------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH c AS (SELECT msg_id FROM pgmq.%1$I
                WHERE vt <= clock_timestamp() AND ($3 = ''{}''::jsonb OR message @> $3)
                ORDER BY msg_id LIMIT $1 FOR UPDATE SKIP LOCKED),
          r AS (UPDATE pgmq.%1$I m
                SET last_read_at = clock_timestamp(), vt = clock_timestamp() + make_interval(secs => $2),
                    read_ct = m.read_ct + 1
                FROM c WHERE m.msg_id = c.msg_id
                RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers)
     SELECT * FROM r ORDER BY msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING qty, vt, coalesce(conditional, '{}'::jsonb);
END $$;

-- read_with_poll reads like read; while nothing is visible it sleeps poll_interval_ms and tries
-- again, for up to max_poll_seconds. Each try is its own statement with its own snapshot, so a
-- message committed meanwhile is found, and nothing is locked while it sleeps. As in PGMQ, the
-- deadline is checked before each try.
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
  queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5,
  poll_interval_ms integer DEFAULT 100, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
DECLARE
  stop_at timestamptz := clock_timestamp() + make_interval(secs => max_poll_seconds);
BEGIN
  LOOP
    IF clock_timestamp() >= stop_at THEN
      RETURN;
    END IF;
    RETURN QUERY SELECT * FROM pgmq.read(read_with_poll.queue_name, read_with_poll.vt, read_with_poll.qty,
      read_with_poll.conditional);
    IF FOUND THEN
      RETURN;
    END IF;
    PERFORM pg_sleep(poll_interval_ms::numeric / 1000);
  END LOOP;
END $$;

-- pop deletes up to qty visible messages and returns them (read_ct and last_read_at as they
-- were: popping is not a read).
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name text, qty integer DEFAULT 1)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH c AS (SELECT msg_id FROM pgmq.%1$I WHERE vt <= clock_timestamp()
                ORDER BY msg_id LIMIT $1 FOR UPDATE SKIP LOCKED),
          d AS (DELETE FROM pgmq.%1$I m USING c WHERE m.msg_id = c.msg_id
                RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers)
     SELECT * FROM d ORDER BY msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING qty;
END $$;

------------------------------------------------------------------------------------------------
-- Acknowledging: delete, or archive (move to a_<queue> with archived_at). Batch forms return
-- the ids they found, in order.
------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  found_id bigint;
BEGIN
  EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = $1 RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'))
    INTO found_id USING msg_id;
  RETURN found_id IS NOT NULL;
END $$;

CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH d AS (DELETE FROM pgmq.%I WHERE msg_id = ANY($1) RETURNING msg_id) SELECT msg_id FROM d ORDER BY msg_id',
    pgmq.format_table_name(queue_name, 'q')) USING msg_ids;
END $$;

-- _archive_sql moves the messages whose ids match $1 (= $1 or = ANY($1)) to the archive and
-- returns their ids in order.
CREATE OR REPLACE FUNCTION pgmq._archive_sql(queue_name text, id_match text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT format(
    'WITH d AS (DELETE FROM pgmq.%I WHERE msg_id %s
                RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers),
          a AS (INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
                SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM d
                RETURNING msg_id)
     SELECT msg_id FROM a ORDER BY msg_id',
    pgmq.format_table_name(queue_name, 'q'), id_match, pgmq.format_table_name(queue_name, 'a'))
$$;

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  found_id bigint;
BEGIN
  EXECUTE pgmq._archive_sql(queue_name, '= $1') INTO found_id USING msg_id;
  RETURN found_id IS NOT NULL;
END $$;

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE pgmq._archive_sql(queue_name, '= ANY($1)') USING msg_ids;
END $$;

------------------------------------------------------------------------------------------------
-- Visibility: set_vt makes messages invisible until a time (seconds from now, or a timestamp);
-- a worker's heartbeat, or a retry delay. It does not count as a read.
------------------------------------------------------------------------------------------------

-- _set_vt_sql sets vt to $2 on the messages whose ids match $1, returning them in id order.
CREATE OR REPLACE FUNCTION pgmq._set_vt_sql(queue_name text, id_match text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT format(
    'WITH u AS (UPDATE pgmq.%I SET vt = $2 WHERE msg_id %s
                RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
     SELECT * FROM u ORDER BY msg_id',
    pgmq.format_table_name(queue_name, 'q'), id_match)
$$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt timestamptz)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE pgmq._set_vt_sql(queue_name, '= $1') USING msg_id, vt;
END $$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE pgmq._set_vt_sql(queue_name, '= $1')
    USING msg_id, clock_timestamp() + make_interval(secs => vt);
END $$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt timestamptz)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE pgmq._set_vt_sql(queue_name, '= ANY($1)') USING msg_ids, vt;
END $$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE pgmq._set_vt_sql(queue_name, '= ANY($1)')
    USING msg_ids, clock_timestamp() + make_interval(secs => vt);
END $$;

------------------------------------------------------------------------------------------------
-- Metrics. Ages and visibility are measured at the transaction's time (now()), as in PGMQ;
-- total_messages is the number of ids the queue has handed out.
------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result LANGUAGE plpgsql AS $$
DECLARE
  qtable text := format('pgmq.%I', pgmq.format_table_name(queue_name, 'q'));
  r pgmq.metrics_result;
BEGIN
  EXECUTE format(
    'SELECT $1::text,
            count(*)::bigint,
            extract(epoch FROM now() - max(enqueued_at))::integer,
            extract(epoch FROM now() - min(enqueued_at))::integer,
            (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s),
            now(),
            count(*) FILTER (WHERE vt <= now())::bigint
     FROM %s',
    pg_get_serial_sequence(qtable, 'msg_id'), qtable) INTO r USING queue_name;
  RETURN r;
END $$;

CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result LANGUAGE plpgsql AS $$
DECLARE
  q record;
BEGIN
  FOR q IN SELECT m.queue_name FROM pgmq.meta m ORDER BY m.created_at, m.queue_name LOOP
    RETURN NEXT pgmq.metrics(q.queue_name);
  END LOOP;
END $$;

------------------------------------------------------------------------------------------------
-- Refused: what PGMQ 1.11 offers beyond plain queues. Each entry point exists with PGMQ's
-- signature, so a client calling it gets this error instead of "function does not exist".
------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq._bundled_unsupported(function_name text, feature text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%: % are not supported by the bundled PGMQ schema', function_name, feature
    USING ERRCODE = 'feature_not_supported',
          HINT = 'The consumer installs its own PGMQ-compatible schema only where the pgmq extension is missing; install the extension to use this function.';
END $$;

CREATE OR REPLACE FUNCTION pgmq.create_partitioned(queue_name text, partition_interval text DEFAULT '10000', retention_interval text DEFAULT '100000')
RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.create_partitioned', 'partitioned queues'); END $$;
CREATE OR REPLACE FUNCTION pgmq.convert_archive_partitioned(table_name text, partition_interval text DEFAULT '10000', retention_interval text DEFAULT '100000', leading_partition integer DEFAULT 10)
RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.convert_archive_partitioned', 'partitioned queues'); END $$;

CREATE OR REPLACE FUNCTION pgmq.read_grouped(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.read_grouped', 'FIFO groups'); END $$;
CREATE OR REPLACE FUNCTION pgmq.read_grouped_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.read_grouped_with_poll', 'FIFO groups'); END $$;
CREATE OR REPLACE FUNCTION pgmq.read_grouped_rr(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.read_grouped_rr', 'FIFO groups'); END $$;
CREATE OR REPLACE FUNCTION pgmq.read_grouped_rr_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.read_grouped_rr_with_poll', 'FIFO groups'); END $$;
CREATE OR REPLACE FUNCTION pgmq.read_grouped_head(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.read_grouped_head', 'FIFO groups'); END $$;
CREATE OR REPLACE FUNCTION pgmq.read_grouped_head_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.read_grouped_head_with_poll', 'FIFO groups'); END $$;
CREATE OR REPLACE FUNCTION pgmq.create_fifo_index(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.create_fifo_index', 'FIFO groups'); END $$;
CREATE OR REPLACE FUNCTION pgmq.create_fifo_indexes_all()
RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.create_fifo_indexes_all', 'FIFO groups'); END $$;

CREATE OR REPLACE FUNCTION pgmq.bind_topic(pattern text, queue_name text)
RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.bind_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.unbind_topic(pattern text, queue_name text)
RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.unbind_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.test_routing(routing_key text)
RETURNS TABLE (pattern text, queue_name text, compiled_regex text) LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.test_routing', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb, delay integer)
RETURNS integer LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, delay integer)
RETURNS integer LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb)
RETURNS integer LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS TABLE (queue_name text, msg_id bigint) LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_batch_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint) LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_batch_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[])
RETURNS TABLE (queue_name text, msg_id bigint) LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_batch_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay timestamptz)
RETURNS TABLE (queue_name text, msg_id bigint) LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_batch_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint) LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_batch_topic', 'topics'); END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[])
RETURNS TABLE (queue_name text, msg_id bigint) LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.send_batch_topic', 'topics'); END $$;

-- The consumer announces inserts with its own trigger (tasker.enable_queue_notify).
CREATE OR REPLACE FUNCTION pgmq.enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250)
RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.enable_notify_insert', 'PGMQ insert notifications'); END $$;
CREATE OR REPLACE FUNCTION pgmq.disable_notify_insert(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pgmq._bundled_unsupported('pgmq.disable_notify_insert', 'PGMQ insert notifications'); END $$;

INSERT INTO pgmq.bundled_version (version) VALUES (2) ON CONFLICT DO NOTHING;

-- Marks the schema as ours, so that a later migrate upgrades it in place rather than taking it
-- for someone else's SQL-only PGMQ install.
COMMENT ON SCHEMA pgmq IS 'consumer-bundled-pgmq';
