-- conversations: one row per conversation, with the timestamps and durations every metric
-- is built from.
--
-- Definition (docs/metrics.md explains each with examples)
-- * started_at: the conversation's first event.
-- * queued_at: when it entered the human queue: its first `conversation_queued`; without
--   one, `started_at` when no bot took part; when a bot took part, the moment a human took
--   over (first assignment or agent reply). NULL when only a bot handled it (containment).
-- * assigned_at: the first assignment (or transfer to a named agent).
-- * first_response_at: the first public message by an agent (not a bot, not a private note)
--   at or after queued_at.
-- * resolved_at: the last resolution, NULL while the conversation is open (reopened and not
--   resolved again). A session of loose customer messages ends `session_gap` after its last
--   message.
-- * outcome: `bot_resolved` (resolved without reaching the queue), `with_bot` (open, only a
--   bot so far), `answered` (an agent replied),
--   `lost` (reached the queue, resolved with no agent reply, never assigned),
--   `abandoned_after_assignment` (the same, but assigned), `waiting` (open, no reply yet).
-- * team/agent at first response and at resolution: the last value a conversation event
--   named at or before that moment (after a transfer the wait belongs to the team that
--   answered, the handle time to the team that resolved). The agent at first response is
--   the one who replied; at resolution, nobody if the conversation went back to a queue
--   (reopened, queued, transferred to a team) and no agent took it since.
-- * team/agent at assignment (`team_assigned`, `agent_assigned`: the stop event of
--   wait_to_assign) and at the last rating (`team_rated`, `agent_rated`: the stop event of
--   csat), by the same rule. NULL where nothing was named by then.
-- * Durations in seconds, calendar and business (`*_business_s`, in the calendar named by
--   `metrics.calendar`): wait = first_response_at − queued_at; wait_to_assign =
--   assigned_at − queued_at; first_response = first_response_at − started_at; handle =
--   resolved_at − assigned_at; resolution = resolved_at − started_at.
WITH s AS (SELECT * FROM settings),
ce AS (SELECT * FROM conversation_events),
agg AS (
  SELECT conv,
         CASE WHEN starts_with(conv, 'session:') THEN 'whatsapp' ELSE min(source) END AS source,
         min(customer_key) AS customer_key,
         min(ts) AS started_at,
         max(ts) AS last_event_at,
         min(ts) FILTER (WHERE kind = 'conversation_queued') AS first_queued_at,
         min(ts) FILTER (WHERE kind = 'conversation_assigned'
                            OR (kind = 'conversation_transferred' AND agent_id IS NOT NULL)) AS assigned_at,
         min(ts) FILTER (WHERE kind = 'message_out' AND author = 'agent' AND NOT private) AS first_agent_message_at,
         COALESCE(bool_or(author = 'bot'), false) AS bot_involved,
         max(ts) FILTER (WHERE kind = 'conversation_resolved') AS last_resolved_at,
         max(ts) FILTER (WHERE kind = 'conversation_reopened') AS last_reopened_at,
         count(*) FILTER (WHERE kind = 'conversation_reopened') AS reopens,
         count(*) FILTER (WHERE kind = 'conversation_transferred') AS transfers,
         count(*) FILTER (WHERE kind = 'message_in') AS messages_in,
         count(*) FILTER (WHERE kind = 'message_out' AND NOT private) AS messages_out,
         count(*) FILTER (WHERE kind = 'message_out' AND private) AS private_notes,
         last_value(csat_score ORDER BY ts, kind_rank, event_id) FILTER (WHERE csat_score IS NOT NULL) AS csat_score,
         max(ts) FILTER (WHERE csat_score IS NOT NULL) AS csat_at,
         last_value(channel ORDER BY ts, kind_rank, event_id) FILTER (WHERE channel IS NOT NULL) AS channel,
         last_value(inbox ORDER BY ts, kind_rank, event_id) FILTER (WHERE inbox IS NOT NULL) AS inbox,
         last_value(priority ORDER BY ts, kind_rank, event_id) FILTER (WHERE priority IS NOT NULL) AS priority,
         last_value(reason ORDER BY ts, kind_rank, event_id) FILTER (WHERE kind = 'conversation_resolved') AS resolution_reason
  FROM ce
  GROUP BY conv
),
q AS (
  SELECT a.*,
         CASE
           WHEN first_queued_at IS NOT NULL THEN first_queued_at
           WHEN NOT bot_involved THEN started_at
           ELSE least(assigned_at, first_agent_message_at)
         END AS queued_at,
         CASE
           WHEN starts_with(conv, 'session:')
             THEN last_event_at + arrow_cast(s.session_gap_us, 'Duration(Microsecond)')
           WHEN last_resolved_at IS NOT NULL
                AND (last_reopened_at IS NULL OR last_reopened_at <= last_resolved_at)
             THEN last_resolved_at
         END AS resolved_at
  FROM agg a CROSS JOIN s
),
fr AS (
  SELECT ce.conv,
         min(ce.ts) AS first_response_at,
         first_value(ce.agent_id ORDER BY ce.ts, ce.kind_rank, ce.event_id) AS agent_first_response
  FROM ce JOIN q ON ce.conv = q.conv
  WHERE ce.kind = 'message_out' AND ce.author = 'agent' AND NOT ce.private
    AND ce.ts >= q.queued_at
  GROUP BY ce.conv
),
c AS (
  SELECT q.*, fr.first_response_at, fr.agent_first_response
  FROM q LEFT JOIN fr ON q.conv = fr.conv
),
-- The events that name a team or an agent: small, and all the "value in force" lookups need.
named AS (
  SELECT conv, ts, kind_rank, event_id, team, agent_in_force FROM ce
  WHERE team IS NOT NULL OR agent_in_force IS NOT NULL
),
at_moments AS (
  SELECT c.conv,
         last_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.team IS NOT NULL AND n.ts <= COALESCE(c.queued_at, c.started_at)) AS team_queued,
         last_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.team IS NOT NULL AND n.ts <= c.first_response_at) AS team_first_response,
         last_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.team IS NOT NULL AND n.ts <= c.resolved_at) AS team_resolved,
         last_value(n.agent_in_force ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.agent_in_force IS NOT NULL AND n.ts <= c.resolved_at) AS agent_resolved,
         last_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.team IS NOT NULL AND n.ts <= c.assigned_at) AS team_assigned,
         last_value(n.agent_in_force ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.agent_in_force IS NOT NULL AND n.ts <= c.assigned_at) AS agent_assigned,
         last_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.team IS NOT NULL AND n.ts <= c.csat_at) AS team_rated,
         last_value(n.agent_in_force ORDER BY n.ts, n.kind_rank, n.event_id)
           FILTER (WHERE n.agent_in_force IS NOT NULL AND n.ts <= c.csat_at) AS agent_rated,
         last_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id) FILTER (WHERE n.team IS NOT NULL) AS team_last,
         first_value(n.team ORDER BY n.ts, n.kind_rank, n.event_id) FILTER (WHERE n.team IS NOT NULL) AS team_first
  FROM c JOIN named n ON c.conv = n.conv
  GROUP BY c.conv
)
SELECT c.conv AS conversation_id,
       c.source, c.customer_key, c.channel, c.inbox, c.priority,
       COALESCE(m.team_queued, m.team_first) AS team_queued,
       m.team_first_response, c.agent_first_response,
       m.team_resolved, NULLIF(m.agent_resolved, '') AS agent_resolved,
       m.team_assigned, NULLIF(m.agent_assigned, '') AS agent_assigned,
       m.team_rated, NULLIF(m.agent_rated, '') AS agent_rated,
       COALESCE(m.team_last, m.team_first) AS team,
       c.started_at, c.queued_at, c.assigned_at, c.first_response_at, c.resolved_at,
       c.last_event_at, c.resolution_reason,
       CASE
         WHEN c.queued_at IS NULL AND c.resolved_at IS NULL THEN 'with_bot'
         WHEN c.queued_at IS NULL THEN 'bot_resolved'
         WHEN c.first_response_at IS NOT NULL THEN 'answered'
         WHEN c.resolved_at IS NULL THEN 'waiting'
         WHEN c.assigned_at IS NULL OR c.assigned_at > c.resolved_at THEN 'lost'
         ELSE 'abandoned_after_assignment'
       END AS outcome,
       c.bot_involved, c.reopens, c.transfers,
       c.messages_in, c.messages_out, c.private_notes,
       c.csat_score, c.csat_at,
       seconds_between(c.queued_at, c.first_response_at) AS wait_s,
       seconds_between(c.queued_at, c.assigned_at) AS wait_to_assign_s,
       seconds_between(c.started_at, c.first_response_at) AS first_response_s,
       seconds_between(c.assigned_at, c.resolved_at) AS handle_s,
       seconds_between(c.started_at, c.resolved_at) AS resolution_s,
       business_seconds(c.queued_at, c.first_response_at, s.calendar) AS wait_business_s,
       business_seconds(c.queued_at, c.assigned_at, s.calendar) AS wait_to_assign_business_s,
       business_seconds(c.started_at, c.first_response_at, s.calendar) AS first_response_business_s,
       business_seconds(c.assigned_at, c.resolved_at, s.calendar) AS handle_business_s,
       business_seconds(c.started_at, c.resolved_at, s.calendar) AS resolution_business_s
FROM c
LEFT JOIN at_moments m ON c.conv = m.conv
CROSS JOIN s
