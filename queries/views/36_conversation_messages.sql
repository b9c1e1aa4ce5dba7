-- conversation_messages: every message of a conversation with the dimensions in force when
-- it was sent — the facts behind the `messages` metric. Computed once per session; kept as
-- a rollup.
--
-- Definition
-- * A message is a `message_in` (customer → business) or a public `message_out` (agent or
--   bot → customer); private notes are not messages.
-- * team, channel, inbox and priority are the last values a conversation event named at or
--   before the message (in event order); `agent` is the sender for an agent's message and
--   otherwise the agent in force (NULL for nobody).
-- * before_queue: sent before the conversation reached the human queue (its `queued_at`,
--   or never queued): while only a bot had it.
WITH ce AS (
  SELECT conv, ts, event_id, kind, author, private, agent_id,
         last_value(team) IGNORE NULLS OVER w AS team,
         NULLIF(last_value(agent_in_force) IGNORE NULLS OVER w, '') AS agent_in_force,
         last_value(channel) IGNORE NULLS OVER w AS channel,
         last_value(inbox) IGNORE NULLS OVER w AS inbox,
         last_value(priority) IGNORE NULLS OVER w AS priority
  FROM conversation_events
  WINDOW w AS (PARTITION BY conv ORDER BY ts, kind_rank, event_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT ce.conv AS conversation_id, ce.ts, ce.event_id, ce.kind, ce.author, ce.team,
       CASE WHEN ce.kind = 'message_out' AND ce.author = 'agent' THEN ce.agent_id
            ELSE ce.agent_in_force END AS agent,
       ce.channel, ce.inbox, ce.priority,
       c.queued_at IS NULL OR ce.ts < c.queued_at AS before_queue
FROM ce JOIN conversations c ON ce.conv = c.conversation_id
WHERE ce.kind = 'message_in' OR (ce.kind = 'message_out' AND NOT ce.private)
