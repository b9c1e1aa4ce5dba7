-- conversations (drill-down): the conversations behind a chart or a headline number, one
-- row each, for people to read and export.
--
-- A conversation is listed when it started in [$from, $to) and matches every filter given
-- (team = the team it was last with, `bot` for a conversation only a bot had and no event
-- gave a team; agent = the agent of its first response or its
-- resolution; agent `bot` = never reached the human queue, the metrics' group of that
-- name; agent `unassigned` = reached the queue and no agent replied to or resolved it).
-- $outcome keeps one outcome (answered, lost, abandoned_after_assignment,
-- waiting, bot_resolved, with_bot). Oldest first; $limit rows from $offset.
-- Durations in seconds, calendar time.
SELECT conversation_id, started_at, queued_at, assigned_at, first_response_at, resolved_at,
       outcome, team, agent_first_response, agent_resolved, channel, inbox, priority,
       wait_s, handle_s, resolution_s, transfers, reopens, messages_in, messages_out,
       csat_score
FROM conversations
WHERE started_at >= $from AND started_at < $to
  AND ($team IS NULL OR team = $team OR ($team = 'bot' AND queued_at IS NULL AND team IS NULL))
  AND ($agent IS NULL OR agent_first_response = $agent OR agent_resolved = $agent
       OR ($agent = 'bot' AND queued_at IS NULL)
       OR ($agent = 'unassigned' AND queued_at IS NOT NULL
           AND agent_first_response IS NULL AND agent_resolved IS NULL))
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
  AND ($outcome IS NULL OR outcome = $outcome)
ORDER BY started_at, conversation_id
LIMIT $limit OFFSET $offset
