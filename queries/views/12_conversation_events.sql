-- conversation_events: every event that belongs to a conversation, tagged with the key of
-- that conversation (`conv`).
--
-- Definition
-- * An event a source placed in a conversation (`conversation_id`) belongs to it.
-- * A customer message without a conversation (WhatsApp sends none) belongs to the one
--   `conversation_links` gives it: the customer's conversation open at the time, or a
--   session of loose messages (see that view). A copy of a message that a source also
--   reported inside a conversation is dropped: each message counts once.
-- * Delivery statuses and agent statuses are not conversation events.
-- * `private` marks agents' internal notes, which are not messages to the customer.
-- * `kind_rank` orders events of the same instant the way they happen (opened, reopened,
--   queued, transferred, assigned, messages, resolved, rated).
-- * `agent_in_force` is the agent this event leaves in charge: the one it names; nobody
--   ('') when it sends the conversation back to a queue (queued, reopened, or transferred
--   without naming an agent); NULL when it says nothing about it.
WITH base AS (
  SELECT event_id, ts, source, kind, conversation_id, customer_key, agent_id, team, channel,
         inbox, priority, author, message_id, reason, csat_score,
         COALESCE(attrs LIKE '%"private":true%', false) AS private
  FROM events
  WHERE kind NOT IN ('agent_status', 'message_status')
),
placed_events AS (
  SELECT conversation_id AS conv, event_id, ts, source, kind, customer_key, agent_id, team,
         channel, inbox, priority, author, message_id, reason, csat_score, private
  FROM base
  WHERE conversation_id IS NOT NULL
  UNION ALL
  SELECT p.conv, b.event_id, b.ts, b.source, b.kind, b.customer_key, b.agent_id, b.team,
         b.channel, b.inbox, b.priority, b.author, b.message_id, b.reason, b.csat_score, b.private
  FROM base b JOIN conversation_links p ON b.event_id = p.event_id
  WHERE b.conversation_id IS NULL
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
