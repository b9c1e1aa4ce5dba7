-- resolution: the time to resolution, from the customer's first message.
--
-- resolution = resolved_at − started_at, for conversations that reached the human queue
-- (conversations a bot resolved are left out: see abandonment's bot_resolved).
-- One value per conversation, in seconds (calendar, or business time with $business),
-- attributed to the interval of resolved_at (the moment it is known), grouped by the
-- team resolved / agent resolved at that moment (agent `unassigned` when nobody had the
-- conversation then: never assigned, or sent back to a queue).
-- Reported: count, mean (value), p50, p90, p95, max.
-- Parameters: $from $to (instants) $interval $tz $group_by $business
--             $team $agent $channel $inbox $priority (NULL = all)
WITH x AS (
  SELECT resolved_at AS at,
         CASE WHEN $business THEN resolution_business_s ELSE resolution_s END AS v,
         team_resolved AS team, COALESCE(agent_resolved, 'unassigned') AS agent,
         channel, inbox, priority
  FROM conversations
  WHERE resolved_at >= $from AND resolved_at < $to AND queued_at IS NOT NULL AND NOT starts_with(conversation_id, 'session:')
)
SELECT CASE WHEN $group_by = 'team' THEN team WHEN $group_by = 'agent' THEN agent
            WHEN $group_by = 'channel' THEN channel WHEN $group_by = 'inbox' THEN inbox
            WHEN $group_by = 'priority' THEN priority ELSE 'all' END AS grp,
       bucket_start(at, $interval, $tz) AS bucket_start,
       bucket_end(at, $interval, $tz) AS bucket_end,
       count(v) AS count,
       avg(v) AS value,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY v) AS p95,
       max(v) AS max
FROM x
WHERE ($team IS NULL OR team = $team) AND ($agent IS NULL OR agent = $agent)
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
GROUP BY 1, 2, 3
ORDER BY 1, 2
