-- conversation_events: every event that belongs to a conversation, tagged with the key of
-- that conversation (`conv`).
--
-- Definition
-- * An event a source placed in a conversation (`conversation_id`) belongs to it.
-- * A customer message without a conversation (WhatsApp sends none) belongs to that
--   customer's latest conversation that started no later than `link_grace` after the
--   message (platforms open the conversation just after its first message), provided that
--   conversation is open at the message, or was resolved less than `session_gap` before it
--   (a "thank you" after the resolution is part of the conversation, not a new one).
-- * If a source also reported the same message inside a conversation (same kind and
--   `message_id`), the copy without a conversation is dropped: each message counts once.
-- * Customer messages that belong to no conversation make sessions of their own: a new
--   session starts after `session_gap` of silence. Its key is
--   `session:<customer_key>:<first message, µs since the epoch>`.
-- * Delivery statuses and agent statuses are not conversation events.
-- * `private` marks agents' internal notes, which are not messages to the customer.
-- * `kind_rank` orders events of the same instant the way they happen (opened, reopened,
--   queued, transferred, assigned, messages, resolved, rated).
-- * `agent_in_force` is the agent this event leaves in charge: the one it names; nobody
--   ('') when it sends the conversation back to a queue (queued, reopened, or transferred
--   without naming an agent); NULL when it says nothing about it.
WITH s AS (SELECT * FROM settings),
base AS (
  SELECT event_id, ts, arrow_cast(ts, 'Int64') AS ts_us, source, kind, conversation_id,
         customer_key, agent_id, team, channel, inbox, priority, author, message_id, reason,
         csat_score, COALESCE(attrs LIKE '%"private":true%', false) AS private
  FROM events
  WHERE kind NOT IN ('agent_status', 'message_status')
),
named AS (
  SELECT conversation_id AS conv,
         min(customer_key) AS customer_key,
         min(ts_us) AS started_us,
         max(ts_us) FILTER (WHERE kind = 'conversation_resolved') AS resolved_us,
         max(ts_us) FILTER (WHERE kind = 'conversation_reopened') AS reopened_us
  FROM base
  WHERE conversation_id IS NOT NULL
  GROUP BY conversation_id
),
named_messages AS (
  SELECT DISTINCT kind, message_id FROM base
  WHERE conversation_id IS NOT NULL AND message_id IS NOT NULL
    AND kind IN ('message_in', 'message_out')
),
loose AS (
  SELECT b.* FROM base b
  LEFT JOIN named_messages m ON b.kind = m.kind AND b.message_id = m.message_id
  WHERE b.conversation_id IS NULL AND b.customer_key IS NOT NULL AND m.message_id IS NULL
),
-- One ordered stream per customer: each conversation's start (moved `link_grace` earlier)
-- and each loose message. A message takes the latest start before it.
stream AS (
  SELECT n.customer_key, n.started_us - s.link_grace_us AS key_us, 0 AS ord, n.conv,
         CASE WHEN n.resolved_us IS NULL OR n.reopened_us > n.resolved_us
              THEN 9223372036854775807
              ELSE n.resolved_us + s.session_gap_us END AS linkable_until_us,
         CAST(NULL AS VARCHAR) AS event_id
  FROM named n CROSS JOIN s
  WHERE n.customer_key IS NOT NULL
  UNION ALL
  SELECT customer_key, ts_us, 1, CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT), event_id
  FROM loose
),
placed AS (
  SELECT event_id, key_us AS ts_us, customer_key,
         last_value(conv) IGNORE NULLS OVER w AS candidate,
         last_value(linkable_until_us) IGNORE NULLS OVER w AS until_us
  FROM stream
  WINDOW w AS (PARTITION BY customer_key ORDER BY key_us, ord
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
linked AS (
  SELECT event_id, customer_key, ts_us,
         CASE WHEN candidate IS NOT NULL AND ts_us <= until_us THEN candidate END AS conv
  FROM placed
  WHERE event_id IS NOT NULL
),
orphans AS (
  SELECT event_id, customer_key, ts_us,
         CASE WHEN ts_us - lag(ts_us) OVER (PARTITION BY customer_key ORDER BY ts_us, event_id)
                   <= (SELECT session_gap_us FROM s)
              THEN 0 ELSE 1 END AS starts_session
  FROM linked
  WHERE conv IS NULL
),
numbered AS (
  SELECT event_id, customer_key, ts_us,
         sum(starts_session) OVER (PARTITION BY customer_key ORDER BY ts_us, event_id
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no
  FROM orphans
),
placement AS (
  SELECT event_id, conv FROM linked WHERE conv IS NOT NULL
  UNION ALL
  SELECT event_id,
         'session:' || customer_key || ':'
           || CAST(min(ts_us) OVER (PARTITION BY customer_key, session_no) AS VARCHAR) AS conv
  FROM numbered
),
placed_events AS (
  SELECT conversation_id AS conv, event_id, ts, source, kind, customer_key, agent_id, team,
         channel, inbox, priority, author, message_id, reason, csat_score, private
  FROM base
  WHERE conversation_id IS NOT NULL
  UNION ALL
  SELECT p.conv, l.event_id, l.ts, l.source, l.kind, l.customer_key, l.agent_id, l.team,
         l.channel, l.inbox, l.priority, l.author, l.message_id, l.reason, l.csat_score, l.private
  FROM loose l JOIN placement p ON l.event_id = p.event_id
)
SELECT *,
       CASE kind
         WHEN 'conversation_opened' THEN 0 WHEN 'conversation_reopened' THEN 1
         WHEN 'conversation_queued' THEN 2 WHEN 'conversation_transferred' THEN 3
         WHEN 'conversation_assigned' THEN 4 WHEN 'message_in' THEN 5
         WHEN 'message_out' THEN 6 WHEN 'conversation_resolved' THEN 7 ELSE 8
       END AS kind_rank,
       CASE
         WHEN kind = 'message_out' AND author <> 'agent' THEN NULL
         WHEN kind = 'message_out' AND private THEN NULL
         WHEN agent_id IS NOT NULL THEN agent_id
         WHEN kind IN ('conversation_queued', 'conversation_reopened', 'conversation_transferred') THEN ''
       END AS agent_in_force
FROM placed_events
