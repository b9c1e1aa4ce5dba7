-- conversation_intervals: when each conversation was open, one row per stretch.
--
-- Definition: a conversation opens at started_at and at every reopening, and closes at
-- every resolution (a session of loose messages closes at its resolved_at). A row is one
-- open stretch [open_from, open_to); open_to is NULL while it is still open. A
-- conversation resolved at 10:00 and reopened at 14:00 is not open at 12:00.
--
-- Each row also carries what the backlog asks of an open conversation — when it was
-- queued, assigned and first answered, and its latest channel, inbox and priority (the
-- `conversations` columns of the same names) — so "what was open at t" reads this table
-- alone, and only the files whose stretches can hold t.
WITH changes AS (
  SELECT conversation_id AS conv, started_at AS ts, 1 AS opens FROM conversations
  UNION ALL
  SELECT conv, ts, CASE WHEN kind = 'conversation_reopened' THEN 1 ELSE 0 END
  FROM conversation_events
  WHERE kind IN ('conversation_resolved', 'conversation_reopened')
  UNION ALL
  SELECT conversation_id, resolved_at, 0 FROM conversations
  WHERE starts_with(conversation_id, 'session:') AND resolved_at IS NOT NULL
),
ordered AS (
  SELECT conv, ts, opens,
         lag(opens) OVER (PARTITION BY conv ORDER BY ts, opens DESC) AS was_open,
         min(CASE WHEN opens = 0 THEN ts END)
           OVER (PARTITION BY conv ORDER BY ts, opens DESC
                 ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS next_close
  FROM changes
),
stretches AS (
  SELECT conv, ts AS open_from, next_close AS open_to
  FROM ordered
  WHERE opens = 1 AND (was_open IS NULL OR was_open = 0)
)
SELECT i.conv AS conversation_id, i.open_from, i.open_to,
       c.queued_at, c.assigned_at, c.first_response_at, c.channel, c.inbox, c.priority
FROM stretches i JOIN conversations c ON i.conv = c.conversation_id
