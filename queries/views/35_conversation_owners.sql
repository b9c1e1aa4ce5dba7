-- conversation_owners: who had each conversation when — one row each time the team or the
-- agent in charge of a conversation changes, so "who had it at instant t" is the last row
-- at or before t, without reading every event. Computed once per session; kept as a
-- rollup.
--
-- Definition
-- * A row is a conversation event (`conversation_events`) that names a team different from
--   the last team named before it, or whose `agent_in_force` differs from the last one
--   before it ('' = nobody: back in a queue).
-- * `team` / `agent_in_force` are that event's values (NULL when it names none). The team
--   in force at t is the last non-NULL `team` at or before t; likewise the agent. Events
--   that repeat the values in force are left out: they change neither answer.
WITH named AS (
  SELECT conv, ts, kind_rank, event_id, team, agent_in_force
  FROM conversation_events
  WHERE team IS NOT NULL OR agent_in_force IS NOT NULL
),
flagged AS (
  SELECT *,
         last_value(team) IGNORE NULLS OVER w AS team_before,
         last_value(agent_in_force) IGNORE NULLS OVER w AS agent_before
  FROM named
  WINDOW w AS (PARTITION BY conv ORDER BY ts, kind_rank, event_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT conv AS conversation_id, ts, kind_rank, event_id, team, agent_in_force
FROM flagged
WHERE (team IS NOT NULL AND team IS DISTINCT FROM team_before)
   OR (agent_in_force IS NOT NULL AND agent_in_force IS DISTINCT FROM agent_before)
