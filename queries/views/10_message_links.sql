-- message_links: each loose customer message (one a source reported without a conversation,
-- as WhatsApp does) and the conversation it belongs to, or NULL when it belongs to none
-- (`conversation_links` then makes sessions of those). Computed once per session.
--
-- Definition
-- * A customer message without a conversation belongs to that customer's latest
--   conversation that started no later than `link_grace` after the message (platforms open
--   the conversation just after its first message), provided that conversation is open at
--   the message, or was resolved less than `session_gap` before it (a "thank you" after the
--   resolution is part of the conversation, not a new one).
-- * If a source also reported the same message inside a conversation (same kind and
--   `message_id`), the copy without a conversation is dropped: each message counts once.
-- * Customer messages that belong to no conversation make sessions of their own: a new
--   session starts after `session_gap` of silence. Its key is
--   `session:<customer_key>:<first message, µs since the epoch>`.
WITH s AS (SELECT * FROM settings),
base AS (
  SELECT event_id, arrow_cast(ts, 'Int64') AS ts_us, kind, conversation_id, customer_key,
         message_id
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
-- A message takes the customer's conversation with the latest start (moved `link_grace`
-- earlier) at or before it, if that conversation is still linkable at the message. A join on
-- the customer rather than a window over all messages: customers have few conversations.
starts AS (
  SELECT n.customer_key, n.conv, n.started_us - s.link_grace_us AS key_us,
         CASE WHEN n.resolved_us IS NULL OR n.reopened_us > n.resolved_us
              THEN 9223372036854775807
              ELSE n.resolved_us + s.session_gap_us END AS linkable_until_us
  FROM named n CROSS JOIN s
  WHERE n.customer_key IS NOT NULL
),
candidates AS (
  SELECT l.event_id, min(l.customer_key) AS customer_key, min(l.ts_us) AS ts_us,
         last_value(c.conv ORDER BY c.key_us, c.conv) AS candidate,
         last_value(c.linkable_until_us ORDER BY c.key_us, c.conv) AS until_us
  FROM loose l
  LEFT JOIN starts c ON c.customer_key = l.customer_key AND c.key_us <= l.ts_us
  GROUP BY l.event_id
)
SELECT event_id, customer_key, ts_us,
       CASE WHEN candidate IS NOT NULL AND ts_us <= until_us THEN candidate END AS conv
FROM candidates
