-- sla_targets: one row per SLA target instance.
--
-- Definition
-- * Each conversation that reached the human queue gets the first SLA policy (config
--   order) whose match fits its channel, team (at queue time), priority and inbox.
-- * first_response: applied at queued_at, satisfied by the first agent reply.
-- * next_response: one instance per customer turn awaiting a reply after the first
--   response — a customer message whose previous public message was an agent's — applied
--   at that message, satisfied by the next agent reply; turns after the conversation is
--   resolved are not awaiting anything.
-- * resolution: applied at queued_at, satisfied by resolved_at.
-- * due_at: applied_at plus the target, in business time of the policy's calendar (or
--   calendar time when the policy names none). Policies on different calendars mix freely:
--   the calendar is looked up row by row.
-- * closed_at: when the conversation was resolved without the target being satisfied (the
--   customer left); such a target was breached if it was already due, else it is
--   `cancelled`.
-- * team, agent: in force at the instant the target is counted once it is settled or due —
--   satisfied_at when satisfied; else closed_at when it closed before it was due
--   (cancelled); else due_at (breached without an answer, or still open past due). So a
--   target breached because nobody answered belongs to the team whose queue held it at the
--   due time, never to "no team". The agent of a satisfied first_response is the agent who
--   replied; otherwise the agent in force then (NULL: nobody had it).
-- * team_applied, agent_applied: in force at applied_at, for a target still open and not
--   yet due (`active`, counted at applied_at).
--   Where no team had been named yet at that instant, the team is team_queued (the team
--   the policy was chosen with).
-- * channel, inbox, priority, started_at, outcome: the conversation's (as in
--   `conversations`), so the SLA metrics read this table alone.
-- The state (achieved / breached / active / active_breached / cancelled) depends on "now"
-- and is computed by the `sla` metric, never stored.
WITH c AS (
  SELECT *, sla_policy(channel, team_queued, priority, inbox) AS policy
  FROM conversations
  WHERE queued_at IS NOT NULL
),
targets AS (
  SELECT c.conversation_id, p.name AS policy, 'first_response' AS metric,
         p.first_response_s AS target_s, p.calendar,
         c.queued_at AS applied_at, c.first_response_at AS satisfied_at, c.resolved_at AS closed_at,
         c.agent_first_response AS replied_by, c.team_queued,
         c.channel, c.inbox, c.priority, c.started_at, c.outcome
  FROM c JOIN sla_policies p ON c.policy = p.name
  WHERE p.first_response_s IS NOT NULL
  UNION ALL
  SELECT c.conversation_id, p.name, 'resolution', p.resolution_s, p.calendar,
         c.queued_at, c.resolved_at, arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))'),
         CAST(NULL AS VARCHAR), c.team_queued,
         c.channel, c.inbox, c.priority, c.started_at, c.outcome
  FROM c JOIN sla_policies p ON c.policy = p.name
  WHERE p.resolution_s IS NOT NULL
),
messages AS (
  SELECT conv, ts, kind_rank, event_id, kind FROM conversation_events
  WHERE kind = 'message_in' OR (kind = 'message_out' AND author = 'agent' AND NOT private)
),
turns AS (
  SELECT conv, ts, kind,
         lag(kind) OVER (PARTITION BY conv ORDER BY ts, kind_rank, event_id) AS previous_kind,
         min(CASE WHEN kind = 'message_out' THEN ts END)
           OVER (PARTITION BY conv ORDER BY ts, kind_rank, event_id
                 ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS next_reply_at
  FROM messages
),
next_response AS (
  SELECT c.conversation_id, p.name AS policy, 'next_response' AS metric,
         p.next_response_s AS target_s, p.calendar,
         t.ts AS applied_at, t.next_reply_at AS satisfied_at, c.resolved_at AS closed_at,
         CAST(NULL AS VARCHAR) AS replied_by, c.team_queued,
         c.channel, c.inbox, c.priority, c.started_at, c.outcome
  FROM turns t
  JOIN c ON t.conv = c.conversation_id
  JOIN sla_policies p ON c.policy = p.name
  WHERE p.next_response_s IS NOT NULL
    AND t.kind = 'message_in' AND t.previous_kind = 'message_out'
    AND t.ts > c.first_response_at
    AND (c.resolved_at IS NULL OR t.ts < c.resolved_at)
),
due AS (
  SELECT t.*,
         business_add(t.applied_at, t.target_s, COALESCE(t.calendar, '24x7')) AS due_at
  FROM (SELECT * FROM targets UNION ALL SELECT * FROM next_response) t
),
settled AS (
  SELECT *,
         CASE WHEN satisfied_at IS NOT NULL THEN satisfied_at
              WHEN closed_at IS NOT NULL AND closed_at < due_at THEN closed_at
              ELSE due_at END AS settled_at
  FROM due
),
-- The events that name a team or an agent, as in `conversations`: who is in force when.
named AS (
  SELECT conv, ts, kind_rank, event_id, team, agent_in_force FROM conversation_events
  WHERE team IS NOT NULL OR agent_in_force IS NOT NULL
),
in_force AS (
  SELECT s.conversation_id, s.metric, s.applied_at,
         last_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.team IS NOT NULL AND n.ts <= s.settled_at) AS team,
         last_value(n.agent_in_force ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.agent_in_force IS NOT NULL AND n.ts <= s.settled_at) AS agent,
         last_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.team IS NOT NULL AND n.ts <= s.applied_at) AS team_applied,
         last_value(n.agent_in_force ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.agent_in_force IS NOT NULL AND n.ts <= s.applied_at) AS agent_applied
  FROM settled s JOIN named n ON s.conversation_id = n.conv
  GROUP BY s.conversation_id, s.metric, s.applied_at
)
SELECT s.conversation_id, s.policy, s.metric, s.target_s, s.calendar, s.applied_at,
       s.due_at, s.satisfied_at, s.closed_at,
       COALESCE(f.team, s.team_queued) AS team,
       CASE WHEN s.replied_by IS NOT NULL AND s.satisfied_at IS NOT NULL THEN s.replied_by
            ELSE NULLIF(f.agent, '') END AS agent,
       COALESCE(f.team_applied, s.team_queued) AS team_applied,
       NULLIF(f.agent_applied, '') AS agent_applied,
       s.channel, s.inbox, s.priority, s.started_at, s.outcome
FROM settled s
LEFT JOIN in_force f
  ON s.conversation_id = f.conversation_id AND s.metric = f.metric
 AND s.applied_at = f.applied_at
