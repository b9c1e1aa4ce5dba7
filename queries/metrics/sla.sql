-- sla: SLA targets met and breached (policies in the configuration).
--
-- One row of `sla_targets` per target instance (first_response, each next_response,
-- resolution). State, judged at $now:
--   achieved        satisfied at or before due_at               counted at satisfied_at
--   breached        satisfied after due_at, or closed unsatisfied after due_at
--                                                               counted at satisfied_at / due_at
--   active          not satisfied, not due yet                  counted at applied_at
--   active_breached not satisfied, past due, still open         counted at due_at
--   cancelled       closed unsatisfied before it was due (the customer left)
--                                                               counted at closed_at
-- value (achievement rate) = achieved ÷ (achieved + breached) × 100.
-- $sla_metric limits to one target metric (NULL = all).
-- Grouped by the team and agent in force at the instant each target is counted: who
-- satisfied it (the reply, the resolution), who had the conversation when it closed
-- (cancelled), whose queue held it at its due time (breached or past due without an
-- answer), who had it when it was applied (active) — `sla_targets` has each. A target counted while no agent had the
-- conversation is in the agent group `unassigned`.
-- Reported: value (percent), count, achieved, breached, active, active_breached, cancelled.
-- Parameters: $from $to $interval $tz $group_by $now $sla_metric
--             $team $agent $channel $inbox $priority
WITH st AS (
  SELECT *,
         CASE
           WHEN satisfied_at IS NOT NULL AND satisfied_at <= due_at THEN 'achieved'
           WHEN satisfied_at IS NOT NULL THEN 'breached'
           WHEN closed_at IS NOT NULL AND closed_at >= due_at THEN 'breached'
           WHEN closed_at IS NOT NULL THEN 'cancelled'
           WHEN due_at <= $now THEN 'active_breached'
           ELSE 'active'
         END AS state,
         -- The instant each state is counted at, in the same order of cases.
         CASE
           WHEN satisfied_at IS NOT NULL THEN satisfied_at
           WHEN closed_at IS NOT NULL AND closed_at >= due_at THEN due_at
           WHEN closed_at IS NOT NULL THEN closed_at
           WHEN due_at <= $now THEN due_at
           ELSE applied_at
         END AS at
  FROM sla_targets
  WHERE ($sla_metric IS NULL OR metric = $sla_metric)
    -- A target is counted at one of these four instants, so one of them lies in the
    -- range; saying so lets the scan skip files whose targets all lie elsewhere.
    AND ((applied_at >= $from AND applied_at < $to)
      OR (satisfied_at >= $from AND satisfied_at < $to)
      OR (due_at >= $from AND due_at < $to)
      OR (closed_at >= $from AND closed_at < $to))
),
x AS (
  SELECT state, at,
         CASE WHEN state = 'active' THEN team_applied ELSE team END AS team,
         COALESCE(CASE WHEN state = 'active' THEN agent_applied ELSE agent END,
                  'unassigned') AS agent,
         channel, inbox, priority
  FROM st
)
SELECT CASE WHEN $group_by = 'team' THEN team WHEN $group_by = 'agent' THEN agent
            WHEN $group_by = 'channel' THEN channel WHEN $group_by = 'inbox' THEN inbox
            WHEN $group_by = 'priority' THEN priority ELSE 'all' END AS grp,
       bucket_start(at, $interval, $tz) AS bucket_start,
       bucket_end(at, $interval, $tz) AS bucket_end,
       CASE WHEN count(*) FILTER (WHERE state IN ('achieved', 'breached')) = 0 THEN NULL
            ELSE 100.0 * count(*) FILTER (WHERE state = 'achieved')
                 / count(*) FILTER (WHERE state IN ('achieved', 'breached')) END AS value,
       count(*) AS count,
       count(*) FILTER (WHERE state = 'achieved') AS achieved,
       count(*) FILTER (WHERE state = 'breached') AS breached,
       count(*) FILTER (WHERE state = 'active') AS active,
       count(*) FILTER (WHERE state = 'active_breached') AS active_breached,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled
FROM x
WHERE at >= $from AND at < $to
  AND ($team IS NULL OR team = $team) AND ($agent IS NULL OR agent = $agent)
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
GROUP BY 1, 2, 3
ORDER BY 1, 2
