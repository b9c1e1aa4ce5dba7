-- service_level: the share of conversations answered within the target T
-- (`metrics.service_level_target`, 60 s unless configured), e.g. "80/20".
--
-- Each conversation that reached the human queue counts once, when its queue outcome is
-- known: when an agent first replied (answered; within T if wait ≤ T, in calendar or
-- business seconds with $business), or when it was resolved without a reply (abandoned).
-- value = answered within T ÷ (answered + abandoned) × 100.
-- Grouped by the team/agent at first response (abandoned: at resolution; agent
-- `unassigned` when nobody had the conversation then).
-- Reported: value (percent), count (answered + abandoned), within_target, answered,
-- abandoned, target_s.
-- Parameters: $from $to $interval $tz $group_by $business $team $agent $channel $inbox $priority
WITH s AS (SELECT service_level_target_s AS target_s FROM settings),
x AS (
  SELECT first_response_at AS at, true AS answered,
         CASE WHEN $business THEN wait_business_s ELSE wait_s END AS wait,
         team_first_response AS team, agent_first_response AS agent, channel, inbox, priority
  FROM conversations
  WHERE outcome = 'answered' AND first_response_at >= $from AND first_response_at < $to
  UNION ALL
  SELECT resolved_at, false, CAST(NULL AS DOUBLE),
         team_resolved, COALESCE(agent_resolved, 'unassigned'), channel, inbox, priority
  FROM conversations
  WHERE outcome IN ('lost', 'abandoned_after_assignment')
    AND resolved_at >= $from AND resolved_at < $to
)
SELECT CASE WHEN $group_by = 'team' THEN team WHEN $group_by = 'agent' THEN agent
            WHEN $group_by = 'channel' THEN channel WHEN $group_by = 'inbox' THEN inbox
            WHEN $group_by = 'priority' THEN priority ELSE 'all' END AS grp,
       bucket_start(at, $interval, $tz) AS bucket_start,
       bucket_end(at, $interval, $tz) AS bucket_end,
       100.0 * count(*) FILTER (WHERE answered AND wait <= s.target_s) / count(*) AS value,
       count(*) AS count,
       count(*) FILTER (WHERE answered AND wait <= s.target_s) AS within_target,
       count(*) FILTER (WHERE answered) AS answered,
       count(*) FILTER (WHERE NOT answered) AS abandoned,
       min(s.target_s) AS target_s
FROM x CROSS JOIN s
WHERE ($team IS NULL OR team = $team) AND ($agent IS NULL OR agent = $agent)
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
GROUP BY 1, 2, 3
ORDER BY 1, 2
