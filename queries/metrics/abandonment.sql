-- abandonment: the share of conversations that reached the human queue and ended without
-- any agent reply.
--
-- Counted when the queue outcome is known, like service_level: answered at the first
-- reply, abandoned at the resolution. `lost` = never assigned, `abandoned_after_assignment`
-- = assigned but the customer left before the reply. value = abandoned ÷ (answered +
-- abandoned) × 100. `bot_resolved` (containment: resolved by a bot, never queued) is
-- reported beside it, counted at its resolution, and is never abandonment.
-- Grouped by the team/agent at the stop event (first reply, else resolution). Agent
-- `unassigned`: nobody had the conversation when it ended. A bot_resolved conversation is
-- the agent group `bot`, and the team group `bot` unless an event named its team.
-- Reported: value (percent), count (answered + abandoned), abandoned, lost,
-- abandoned_after_assignment, answered, bot_resolved.
-- Parameters: $from $to $interval $tz $group_by $team $agent $channel $inbox $priority
WITH x AS (
  SELECT CASE WHEN outcome = 'answered' THEN first_response_at ELSE resolved_at END AS at,
         outcome,
         CASE WHEN outcome = 'answered' THEN team_first_response
              WHEN outcome = 'bot_resolved' THEN COALESCE(team_resolved, 'bot')
              ELSE team_resolved END AS team,
         CASE WHEN outcome = 'answered' THEN agent_first_response
              WHEN outcome = 'bot_resolved' THEN 'bot'
              ELSE COALESCE(agent_resolved, 'unassigned') END AS agent,
         channel, inbox, priority
  FROM conversations
  WHERE outcome IN ('answered', 'lost', 'abandoned_after_assignment', 'bot_resolved')
)
SELECT CASE WHEN $group_by = 'team' THEN team WHEN $group_by = 'agent' THEN agent
            WHEN $group_by = 'channel' THEN channel WHEN $group_by = 'inbox' THEN inbox
            WHEN $group_by = 'priority' THEN priority ELSE 'all' END AS grp,
       bucket_start(at, $interval, $tz) AS bucket_start,
       bucket_end(at, $interval, $tz) AS bucket_end,
       CASE WHEN count(*) FILTER (WHERE outcome <> 'bot_resolved') = 0 THEN NULL
            ELSE 100.0 * count(*) FILTER (WHERE outcome IN ('lost', 'abandoned_after_assignment'))
                 / count(*) FILTER (WHERE outcome <> 'bot_resolved') END AS value,
       count(*) FILTER (WHERE outcome <> 'bot_resolved') AS count,
       count(*) FILTER (WHERE outcome IN ('lost', 'abandoned_after_assignment')) AS abandoned,
       count(*) FILTER (WHERE outcome = 'lost') AS lost,
       count(*) FILTER (WHERE outcome = 'abandoned_after_assignment') AS abandoned_after_assignment,
       count(*) FILTER (WHERE outcome = 'answered') AS answered,
       count(*) FILTER (WHERE outcome = 'bot_resolved') AS bot_resolved
FROM x
WHERE at >= $from AND at < $to
  AND ($team IS NULL OR team = $team) AND ($agent IS NULL OR agent = $agent)
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
GROUP BY 1, 2, 3
ORDER BY 1, 2
