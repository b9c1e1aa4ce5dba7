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
SELECT conv AS conversation_id, ts, event_id, kind, author, team,
       CASE WHEN kind = 'message_out' AND author = 'agent' THEN agent_id ELSE agent_in_force END AS agent,
       channel, inbox, priority
FROM ce
WHERE kind = 'message_in' OR (kind = 'message_out' AND NOT private)
