-- csat: customer satisfaction.
--
-- Each conversation's last rating (1–5) counts once, at the time it was given.
-- value (CSAT %) = ratings of 4 or 5 ÷ all ratings × 100; mean = average score;
-- response_rate = ratings ÷ conversations resolved in the same interval and group × 100
-- (answered conversations only: a rating needs someone to have helped).
-- A rating is grouped by the team/agent in force when it was given (its stop event); a
-- resolution by those at the resolution. A rating of a conversation that only a bot had
-- (never queued, or rated before the handover) is the group `bot` (team too, unless an
-- event named one); agent `unassigned` when a queued conversation had nobody then.
-- Reported: value (percent), count (ratings), mean, satisfied (4–5), resolved,
-- response_rate.
-- Parameters: $from $to $interval $tz $group_by $team $agent $channel $inbox $priority
WITH x AS (
  SELECT csat_at AS at, csat_score AS score, 0 AS resolved,
         COALESCE(team_rated,
                  CASE WHEN queued_at IS NULL OR csat_at < queued_at THEN 'bot' END) AS team,
         COALESCE(agent_rated,
                  CASE WHEN queued_at IS NULL OR csat_at < queued_at THEN 'bot'
                       ELSE 'unassigned' END) AS agent,
         channel, inbox, priority
  FROM conversations
  WHERE csat_score IS NOT NULL AND csat_at >= $from AND csat_at < $to
  UNION ALL
  SELECT resolved_at, CAST(NULL AS TINYINT), 1,
         team_resolved, COALESCE(agent_resolved, 'unassigned'), channel, inbox, priority
  FROM conversations
  WHERE outcome = 'answered' AND resolved_at >= $from AND resolved_at < $to
)
SELECT CASE WHEN $group_by = 'team' THEN team WHEN $group_by = 'agent' THEN agent
            WHEN $group_by = 'channel' THEN channel WHEN $group_by = 'inbox' THEN inbox
            WHEN $group_by = 'priority' THEN priority ELSE 'all' END AS grp,
       bucket_start(at, $interval, $tz) AS bucket_start,
       bucket_end(at, $interval, $tz) AS bucket_end,
       CASE WHEN count(score) = 0 THEN NULL
            ELSE 100.0 * count(*) FILTER (WHERE score >= 4) / count(score) END AS value,
       count(score) AS count,
       avg(CAST(score AS DOUBLE)) AS mean,
       count(*) FILTER (WHERE score >= 4) AS satisfied,
       sum(resolved) AS resolved,
       CASE WHEN sum(resolved) = 0 THEN NULL
            ELSE 100.0 * count(score) / sum(resolved) END AS response_rate
FROM x
WHERE ($team IS NULL OR team = $team) AND ($agent IS NULL OR agent = $agent)
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
GROUP BY 1, 2, 3
ORDER BY 1, 2
