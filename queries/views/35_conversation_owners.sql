-- conversation_owners: who had each conversation when — one row each time the team or the
-- agent in charge of a conversation changes, with the team and agent in force from then
-- until `valid_to`, so "who had it at instant t" is the one row with ts <= t < valid_to,
-- without reading every event. Kept as a rollup.
--
-- Definition
-- * A row is a conversation event (`conversation_events`) that names a team different from
--   the last team named before it, or whose `agent_in_force` differs from the last one
--   before it ('' = nobody: back in a queue). Events that repeat the values in force are
--   left out: they change neither answer.
-- * `team` / `agent_in_force`: the values in force after that event — the last team and
--   the last agent_in_force named at or before it (NULL when none was named yet).
-- * `valid_to`: the next row's ts; for the last row, the end of the conversation's last
--   open stretch (NULL while it is open). Of several rows at one instant only the last
--   holds for any time (the others end where they start). Who had a conversation after
--   it closed is not asked: it is not open then.
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
),
changes AS (
  SELECT conv, ts, kind_rank, event_id, team, agent_in_force
  FROM flagged
  WHERE (team IS NOT NULL AND team IS DISTINCT FROM team_before)
     OR (agent_in_force IS NOT NULL AND agent_in_force IS DISTINCT FROM agent_before)
),
in_force AS (
  SELECT conv, ts, kind_rank, event_id,
         last_value(team) IGNORE NULLS OVER w AS team,
         last_value(agent_in_force) IGNORE NULLS OVER w AS agent_in_force,
         lead(ts) OVER (PARTITION BY conv ORDER BY ts, kind_rank, event_id) AS next_ts
  FROM changes
  WINDOW w AS (PARTITION BY conv ORDER BY ts, kind_rank, event_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
closed AS (
  SELECT conversation_id,
         CASE WHEN count(*) = count(open_to) THEN max(open_to) END AS closed_at
  FROM conversation_intervals
  GROUP BY conversation_id
)
SELECT f.conv AS conversation_id, f.ts, f.kind_rank, f.event_id, f.team, f.agent_in_force,
       COALESCE(f.next_ts, c.closed_at) AS valid_to
FROM in_force f LEFT JOIN closed c ON f.conv = c.conversation_id
