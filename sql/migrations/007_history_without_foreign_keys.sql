-- The workflow tables without foreign keys. The engine writes a task, its steps, edges and
-- history in one statement and only ever adds rows that belong to rows it holds locked, so the
-- keys checked nothing the engine does not already guarantee, at the cost of one key lookup
-- (and a row lock on the referenced row) per inserted row: about 20 for a 4-step task and
-- two more per step transition and dispatch. Deleting a task still removes everything that
-- belongs to it, as the ON DELETE CASCADE keys did: a statement-level trigger deletes the
-- steps, edges, history and dispatch log of the deleted tasks, once per statement.
ALTER TABLE tasker.workflow_tasks DROP CONSTRAINT IF EXISTS workflow_tasks_template_id_fkey;
ALTER TABLE tasker.workflow_steps DROP CONSTRAINT IF EXISTS workflow_steps_task_uuid_fkey;
ALTER TABLE tasker.workflow_step_edges DROP CONSTRAINT IF EXISTS workflow_step_edges_parent_uuid_fkey;
ALTER TABLE tasker.workflow_step_edges DROP CONSTRAINT IF EXISTS workflow_step_edges_child_uuid_fkey;
ALTER TABLE tasker.workflow_task_transitions DROP CONSTRAINT IF EXISTS workflow_task_transitions_task_uuid_fkey;
ALTER TABLE tasker.workflow_step_transitions DROP CONSTRAINT IF EXISTS workflow_step_transitions_step_uuid_fkey;
ALTER TABLE tasker.workflow_step_dispatches DROP CONSTRAINT IF EXISTS workflow_step_dispatches_step_uuid_fkey;

CREATE OR REPLACE FUNCTION tasker.delete_task_dependents() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Through the steps, whose (task_uuid, name) key finds them by task: every other table is
  -- indexed by step.
  DELETE FROM tasker.workflow_step_transitions h
  USING tasker.workflow_steps s JOIN gone g ON g.task_uuid = s.task_uuid
  WHERE h.step_uuid = s.step_uuid;
  DELETE FROM tasker.workflow_step_dispatches d
  USING tasker.workflow_steps s JOIN gone g ON g.task_uuid = s.task_uuid
  WHERE d.step_uuid = s.step_uuid;
  DELETE FROM tasker.workflow_step_edges e
  USING tasker.workflow_steps s JOIN gone g ON g.task_uuid = s.task_uuid
  WHERE e.parent_uuid = s.step_uuid;
  DELETE FROM tasker.workflow_steps s USING gone g WHERE s.task_uuid = g.task_uuid;
  DELETE FROM tasker.workflow_task_transitions h USING gone g WHERE h.task_uuid = g.task_uuid;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS workflow_tasks_delete_dependents ON tasker.workflow_tasks;
CREATE TRIGGER workflow_tasks_delete_dependents
  AFTER DELETE ON tasker.workflow_tasks
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION tasker.delete_task_dependents();
