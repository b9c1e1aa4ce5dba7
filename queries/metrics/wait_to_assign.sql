-- wait_to_assign: the wait in the human queue until an agent took the conversation.
--
-- wait_to_assign = assigned_at − queued_at: from entering the human queue to the first
-- assignment.
-- One value per conversation, in seconds (calendar, or business time with $business),
-- attributed to the interval of assigned_at (the moment it is known), grouped by the
-- team and agent in force at the assignment (agent `unassigned` if it named none).
-- Reported: count, mean (value), p50, p90, p95, max.
-- Parameters: $from $to (instants) $interval $tz $group_by $business
--             $team $agent $channel $inbox $priority (NULL = all)
WITH x AS (
  SELECT assigned_at AS at,
         CASE WHEN $business THEN wait_to_assign_business_s ELSE wait_to_assign_s END AS v,
         team_assigned AS team, COALESCE(agent_assigned, 'unassigned') AS agent,
         channel, inbox, priority
  FROM conversations
  WHERE assigned_at >= $from AND assigned_at < $to AND queued_at IS NOT NULL AND assigned_at >= queued_at
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
