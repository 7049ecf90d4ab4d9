-- Workflow state: the template registry, tasks, their steps and dependency edges, append-only
-- transition history, and the dispatch log. Written and read by the workflow package;
-- operators and scripts read the two views at the end, whose names and columns are part of the
-- product contract (docs/protocol.md).
--
-- Concurrency model: every handler that changes a task locks the task row first
-- (SELECT … FOR UPDATE), so the steps of one task are only ever changed by one transaction at a
-- time. State changes are nevertheless written as compare-and-set updates
-- (UPDATE … WHERE state = <expected>) with a history row in the same statement.
--
-- Rows are deleted only by operators (retention); deleting a task cascades to everything that
-- belongs to it.

CREATE TABLE tasker.workflow_templates (
  template_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  namespace         text NOT NULL,
  name              text NOT NULL,
  version           text NOT NULL,
  -- template.Template.Fingerprint(): equal fingerprints mean the same template.
  fingerprint       text NOT NULL,
  identity_strategy text NOT NULL
    CHECK (identity_strategy IN ('strict', 'caller_provided', 'always_unique')),
  -- The parsed template (defaults applied) as the workflow package encodes it.
  definition        jsonb NOT NULL,
  -- Where the template was first registered from (a file path); for error messages only.
  source            text NOT NULL DEFAULT '',
  registered_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT workflow_templates_key UNIQUE (namespace, name, version)
);

CREATE TABLE tasker.workflow_tasks (
  task_uuid       uuid PRIMARY KEY,
  correlation_id  uuid NOT NULL,
  template_id     bigint NOT NULL REFERENCES tasker.workflow_templates (template_id),
  -- Denormalized from the template so the hot path and the views need no join.
  namespace       text NOT NULL,
  name            text NOT NULL,
  version         text NOT NULL,
  state           text NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'steps_in_process', 'waiting_for_retry', 'complete', 'error', 'cancelled')),
  context         jsonb NOT NULL,
  -- Deduplication identity (hex sha256); NULL for always_unique tasks without an idempotency
  -- key, which never conflict (NULLs are distinct).
  identity_hash   text,
  idempotency_key text,
  request_id      text,
  initiator       text,
  source_system   text,
  reason          text,
  tags            text[] NOT NULL DEFAULT '{}',
  priority        integer NOT NULL DEFAULT 0,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  -- Set when the task reaches complete or error.
  completed_at    timestamptz,
  CONSTRAINT workflow_tasks_identity UNIQUE (template_id, identity_hash)
);

CREATE INDEX workflow_tasks_correlation_id ON tasker.workflow_tasks (correlation_id);
CREATE INDEX workflow_tasks_request_id ON tasker.workflow_tasks (request_id) WHERE request_id IS NOT NULL;
-- No index on state: task state changes stay HOT updates.

CREATE TABLE tasker.workflow_steps (
  step_uuid      uuid PRIMARY KEY,
  task_uuid      uuid NOT NULL REFERENCES tasker.workflow_tasks (task_uuid) ON DELETE CASCADE,
  name           text NOT NULL,
  -- Declaration order in the template; dispatch order among steps ready together.
  position       integer NOT NULL,
  callable       text NOT NULL,
  initialization jsonb NOT NULL DEFAULT '{}',
  state          text NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'enqueued', 'waiting_for_retry', 'complete', 'error', 'cancelled')),
  -- The attempt most recently dispatched (0 before the first dispatch).
  attempts       integer NOT NULL DEFAULT 0,
  max_attempts   integer NOT NULL CHECK (max_attempts >= 1),
  retryable      boolean NOT NULL,
  backoff_base   interval NOT NULL,
  backoff_max    interval NOT NULL,
  -- The accepted result.result of the completed step (JSON null when the worker sent none).
  result         jsonb,
  -- The result.error object of the latest failure.
  last_error     jsonb,
  -- When the pending retry dispatch becomes visible to workers.
  next_retry_at  timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT workflow_steps_task_name UNIQUE (task_uuid, name),
  CONSTRAINT workflow_steps_attempts CHECK (attempts >= 0 AND attempts <= max_attempts)
);

-- workflow_steps_task_name (task_uuid, name) also serves "steps of a task".

-- Dependency edges: parent must complete before child may be dispatched.
CREATE TABLE tasker.workflow_step_edges (
  parent_uuid uuid NOT NULL REFERENCES tasker.workflow_steps (step_uuid) ON DELETE CASCADE,
  child_uuid  uuid NOT NULL REFERENCES tasker.workflow_steps (step_uuid) ON DELETE CASCADE,
  PRIMARY KEY (parent_uuid, child_uuid),
  CHECK (parent_uuid <> child_uuid)
);

CREATE INDEX workflow_step_edges_child ON tasker.workflow_step_edges (child_uuid, parent_uuid);

-- Append-only history. from_state is NULL for the row that records creation.
CREATE TABLE tasker.workflow_task_transitions (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  task_uuid  uuid NOT NULL REFERENCES tasker.workflow_tasks (task_uuid) ON DELETE CASCADE,
  from_state text
    CHECK (from_state IN ('pending', 'steps_in_process', 'waiting_for_retry', 'complete', 'error', 'cancelled')),
  to_state   text NOT NULL
    CHECK (to_state IN ('pending', 'steps_in_process', 'waiting_for_retry', 'complete', 'error', 'cancelled')),
  reason     text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX workflow_task_transitions_task ON tasker.workflow_task_transitions (task_uuid, id);

CREATE TABLE tasker.workflow_step_transitions (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  step_uuid  uuid NOT NULL REFERENCES tasker.workflow_steps (step_uuid) ON DELETE CASCADE,
  task_uuid  uuid NOT NULL, -- denormalized for reading a task's history
  from_state text
    CHECK (from_state IN ('pending', 'enqueued', 'waiting_for_retry', 'complete', 'error', 'cancelled')),
  to_state   text NOT NULL
    CHECK (to_state IN ('pending', 'enqueued', 'waiting_for_retry', 'complete', 'error', 'cancelled')),
  -- The step's attempts after the transition.
  attempt    integer NOT NULL DEFAULT 0,
  reason     text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now()
);

-- By step only (also serves the cascade from workflow_steps); a task's history joins through
-- its steps. Fewer indexes keep the hot path's inserts cheap.
CREATE INDEX workflow_step_transitions_step ON tasker.workflow_step_transitions (step_uuid, id);

-- Every step dispatch sent to a worker queue. The primary key (step_uuid, attempt) is the last
-- guard against dispatching one attempt twice: a second insert fails and rolls back the
-- transaction that would have sent the duplicate.
CREATE TABLE tasker.workflow_step_dispatches (
  step_uuid     uuid NOT NULL REFERENCES tasker.workflow_steps (step_uuid) ON DELETE CASCADE,
  attempt       integer NOT NULL CHECK (attempt >= 1),
  task_uuid     uuid NOT NULL,
  queue         text NOT NULL,
  msg_id        bigint NOT NULL,
  -- The PGMQ delay the message was sent with, in whole seconds.
  delay_seconds integer NOT NULL DEFAULT 0 CHECK (delay_seconds >= 0),
  dispatched_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (step_uuid, attempt)
);

-- Public read model: names, columns and column types are fixed (docs/protocol.md, "Status views").
CREATE VIEW tasker.task_status AS
SELECT t.task_uuid,
       t.correlation_id,
       t.namespace::text AS namespace,
       t.name::text AS name,
       t.version::text AS version,
       t.state::text AS state,
       c.steps_total::integer AS steps_total,
       c.steps_complete::integer AS steps_complete,
       c.steps_error::integer AS steps_error,
       t.created_at,
       t.completed_at
FROM tasker.workflow_tasks t
CROSS JOIN LATERAL (
  SELECT count(*) AS steps_total,
         count(*) FILTER (WHERE s.state = 'complete') AS steps_complete,
         count(*) FILTER (WHERE s.state = 'error') AS steps_error
  FROM tasker.workflow_steps s
  WHERE s.task_uuid = t.task_uuid
) c;

CREATE VIEW tasker.step_status AS
SELECT s.task_uuid,
       s.step_uuid,
       s.name::text AS name,
       s.state::text AS state,
       s.attempts::integer AS attempts,
       s.max_attempts::integer AS max_attempts,
       CASE WHEN s.state = 'complete' THEN s.result END AS result,
       s.last_error,
       s.updated_at
FROM tasker.workflow_steps s;
