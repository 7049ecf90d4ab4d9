-- The consumer's bundled PGMQ-compatible schema.
--
-- Installed by `consumer migrate` only when the database has neither the pgmq extension nor a
-- SQL-only PGMQ install (the product's PGMQ contract). It implements, with PGMQ's documented signatures and
-- semantics, the part of PGMQ's API that the product and its workers use, so the same Go code
-- runs against any of the three. Written for this project; safe to run again (it upgrades
-- functions in place and never touches queue data).

CREATE SCHEMA IF NOT EXISTS pgmq;

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
      msg_id bigint, read_ct integer, enqueued_at timestamptz, vt timestamptz, message jsonb, headers jsonb);
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

-- table_for validates a queue name and returns its quoted queue ('q_') or archive ('a_') table.
-- Every function goes through it, so no caller can reach another relation by string building.
CREATE OR REPLACE FUNCTION pgmq._table_for(queue_name text, prefix text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF queue_name IS NULL OR queue_name = '' THEN
    RAISE EXCEPTION 'queue name must not be empty' USING ERRCODE = '22023';
  END IF;
  IF length(queue_name) > 47 THEN
    RAISE EXCEPTION 'queue name % is too long, maximum length is 47 characters', quote_literal(queue_name)
      USING ERRCODE = '22023';
  END IF;
  IF queue_name !~ '^[a-z0-9_]+$' THEN
    RAISE EXCEPTION 'queue name % is invalid: use lower case letters, digits and _', quote_literal(queue_name)
      USING ERRCODE = '22023';
  END IF;
  RETURN format('pgmq.%I', prefix || queue_name);
END $$;

CREATE OR REPLACE FUNCTION pgmq.create(queue_name text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  qt text := pgmq._table_for(queue_name, 'q_');
  at text := pgmq._table_for(queue_name, 'a_');
  qname text := queue_name;
BEGIN
  -- Serialize concurrent creates of the same queue: IF NOT EXISTS alone races on the catalog.
  PERFORM pg_advisory_xact_lock(hashtext('pgmq.create:' || queue_name));
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS %s (
       msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb)', qt);
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS %s (
       msg_id bigint PRIMARY KEY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       archived_at timestamptz NOT NULL DEFAULT now(),
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb)', at);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (vt ASC)', 'q_' || queue_name || '_vt_idx', qt);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (archived_at)', 'archived_at_idx_' || queue_name, at);
  INSERT INTO pgmq.meta AS m (queue_name) VALUES (qname) ON CONFLICT ON CONSTRAINT meta_queue_name_key DO NOTHING;
END $$;

CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  qt text := pgmq._table_for(queue_name, 'q_');
  at text := pgmq._table_for(queue_name, 'a_');
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name) THEN
    RAISE NOTICE 'pgmq queue % does not exist', queue_name;
    RETURN false;
  END IF;
  EXECUTE format('DROP TABLE IF EXISTS %s', qt);
  EXECUTE format('DROP TABLE IF EXISTS %s', at);
  DELETE FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
  RETURN true;
END $$;

CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  EXECUTE format('WITH d AS (DELETE FROM %s RETURNING 1) SELECT count(*) FROM d', pgmq._table_for(queue_name, 'q_')) INTO n;
  RETURN n;
END $$;

CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record LANGUAGE sql STABLE AS $$
  SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at FROM pgmq.meta m ORDER BY m.queue_name
$$;

-- send_batch with headers and an absolute due time is the one implementation; every send form
-- delegates to it. Messages are visible from `delay`; the enqueue time is the statement's clock.
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  IF headers IS NOT NULL AND cardinality(headers) <> cardinality(msgs) THEN
    RAISE EXCEPTION 'headers must have the same length as msgs (% vs %)', cardinality(headers), cardinality(msgs)
      USING ERRCODE = '22023';
  END IF;
  RETURN QUERY EXECUTE format(
    'INSERT INTO %s (vt, message, headers)
     SELECT $1, m.msg, $2[m.ord] FROM unnest($3) WITH ORDINALITY AS m(msg, ord) ORDER BY m.ord
     RETURNING msg_id', pgmq._table_for(queue_name, 'q_'))
    USING coalesce(delay, clock_timestamp()), headers, msgs;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, msgs, headers, clock_timestamp() + make_interval(secs => greatest(delay, 0)))
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, msgs, headers, clock_timestamp())
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp() + make_interval(secs => greatest(delay, 0)))
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], delay)
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp())
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, ARRAY[msg], ARRAY[headers], delay)
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, ARRAY[msg], ARRAY[headers], clock_timestamp() + make_interval(secs => greatest(delay, 0)))
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, ARRAY[msg], ARRAY[headers], clock_timestamp())
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, ARRAY[msg], NULL::jsonb[], clock_timestamp() + make_interval(secs => greatest(delay, 0)))
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, ARRAY[msg], NULL::jsonb[], delay)
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT pgmq.send_batch(queue_name, ARRAY[msg], NULL::jsonb[], clock_timestamp())
$$;

-- read claims up to qty visible messages, oldest first, skipping rows other readers hold:
-- two readers never get the same message. Each claimed message becomes invisible for vt
-- seconds and its read_ct goes up by one.
CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH c AS (SELECT m.msg_id FROM %1$s m
                WHERE m.vt <= clock_timestamp() AND m.message @> $3
                ORDER BY m.msg_id LIMIT $1 FOR UPDATE SKIP LOCKED)
     UPDATE %1$s q SET vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
     FROM c WHERE q.msg_id = c.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers',
    pgmq._table_for(queue_name, 'q_')) USING qty, vt, coalesce(conditional, '{}'::jsonb);
END $$;

CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  found_id bigint;
BEGIN
  EXECUTE format('DELETE FROM %s WHERE msg_id = $1 RETURNING msg_id', pgmq._table_for(queue_name, 'q_'))
    INTO found_id USING msg_id;
  RETURN found_id IS NOT NULL;
END $$;

CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('DELETE FROM %s WHERE msg_id = ANY($1) RETURNING msg_id', pgmq._table_for(queue_name, 'q_'))
    USING msg_ids;
END $$;

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH d AS (DELETE FROM %1$s WHERE msg_id = ANY($1) RETURNING msg_id, read_ct, enqueued_at, vt, message, headers)
     INSERT INTO %2$s (msg_id, read_ct, enqueued_at, vt, message, headers)
     SELECT msg_id, read_ct, enqueued_at, vt, message, headers FROM d
     RETURNING msg_id',
    pgmq._table_for(queue_name, 'q_'), pgmq._table_for(queue_name, 'a_')) USING msg_ids;
END $$;

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean LANGUAGE sql AS $$
  SELECT EXISTS (SELECT 1 FROM pgmq.archive(queue_name, ARRAY[msg_id]))
$$;

-- set_vt makes a message invisible until vt seconds from now (a worker's heartbeat).
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'UPDATE %s SET vt = clock_timestamp() + make_interval(secs => $2) WHERE msg_id = $1
     RETURNING msg_id, read_ct, enqueued_at, vt, message, headers',
    pgmq._table_for(queue_name, 'q_')) USING msg_id, vt;
END $$;

CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result LANGUAGE plpgsql AS $$
DECLARE
  r pgmq.metrics_result;
BEGIN
  EXECUTE format(
    'SELECT $1::text,
            count(*)::bigint,
            extract(epoch FROM now() - max(enqueued_at))::integer,
            extract(epoch FROM now() - min(enqueued_at))::integer,
            (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s),
            now(),
            count(*) FILTER (WHERE vt <= clock_timestamp())::bigint
     FROM %s',
    format('pgmq.%I', 'q_' || queue_name || '_msg_id_seq'), pgmq._table_for(queue_name, 'q_'))
    INTO r USING queue_name;
  RETURN r;
END $$;

CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result LANGUAGE plpgsql AS $$
DECLARE
  q record;
BEGIN
  FOR q IN SELECT m.queue_name FROM pgmq.meta m ORDER BY m.queue_name LOOP
    RETURN NEXT pgmq.metrics(q.queue_name);
  END LOOP;
END $$;

COMMENT ON SCHEMA pgmq IS 'consumer-bundled-pgmq';
