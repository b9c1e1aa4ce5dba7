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
--   calendar time when the policy names none).
-- * closed_at: when the conversation was resolved without the target being satisfied (the
--   customer left); such a target was breached if it was already due, else it is
--   `cancelled`.
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
         c.team_first_response AS team, c.agent_first_response AS agent,
         c.channel, c.inbox, c.priority, c.started_at, c.outcome
  FROM c JOIN sla_policies p ON c.policy = p.name
  WHERE p.first_response_s IS NOT NULL
  UNION ALL
  SELECT c.conversation_id, p.name, 'resolution', p.resolution_s, p.calendar,
         c.queued_at, c.resolved_at, arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))'),
         c.team_resolved, c.agent_resolved,
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
         c.team_resolved AS team, c.agent_resolved AS agent,
         c.channel, c.inbox, c.priority, c.started_at, c.outcome
  FROM turns t
  JOIN c ON t.conv = c.conversation_id
  JOIN sla_policies p ON c.policy = p.name
  WHERE p.next_response_s IS NOT NULL
    AND t.kind = 'message_in' AND t.previous_kind = 'message_out'
    AND t.ts > c.first_response_at
    AND (c.resolved_at IS NULL OR t.ts < c.resolved_at)
)
SELECT t.conversation_id, t.policy, t.metric, t.target_s, t.calendar, t.applied_at,
       business_add(t.applied_at, t.target_s, COALESCE(t.calendar, '24x7')) AS due_at,
       t.satisfied_at, t.closed_at, t.team, t.agent,
       t.channel, t.inbox, t.priority, t.started_at, t.outcome
FROM (SELECT * FROM targets UNION ALL SELECT * FROM next_response) t
