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
-- $sla_metric limits to one target metric (NULL = all). Grouped by the team/agent that
-- answered (first_response) or resolved (next_response, resolution).
-- Reported: value (percent), count, achieved, breached, active, active_breached, cancelled.
-- Parameters: $from $to $interval $tz $group_by $now $sla_metric
--             $team $agent $channel $inbox $priority
WITH t AS (
  SELECT st.*, c.channel, c.inbox, c.priority,
         CASE
           WHEN st.satisfied_at IS NOT NULL AND st.satisfied_at <= st.due_at THEN 'achieved'
           WHEN st.satisfied_at IS NOT NULL THEN 'breached'
           WHEN st.closed_at IS NOT NULL AND st.closed_at >= st.due_at THEN 'breached'
           WHEN st.closed_at IS NOT NULL THEN 'cancelled'
           WHEN st.due_at <= $now THEN 'active_breached'
           ELSE 'active'
         END AS state
  FROM sla_targets st JOIN conversations c ON st.conversation_id = c.conversation_id
  WHERE $sla_metric IS NULL OR st.metric = $sla_metric
),
x AS (
  SELECT state, team, agent, channel, inbox, priority,
         CASE state
           WHEN 'achieved' THEN satisfied_at
           WHEN 'breached' THEN COALESCE(satisfied_at, due_at)
           WHEN 'active' THEN applied_at
           WHEN 'active_breached' THEN due_at
           ELSE closed_at
         END AS at
  FROM t
)
SELECT CASE $group_by
         WHEN 'team' THEN team WHEN 'agent' THEN agent WHEN 'channel' THEN channel
         WHEN 'inbox' THEN inbox WHEN 'priority' THEN priority ELSE 'all' END AS grp,
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
