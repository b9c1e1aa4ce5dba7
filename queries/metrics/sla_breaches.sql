-- sla_breaches: the SLA targets breached in a period, one row each, for the drill-down and
-- the report's CSV. Same states as `sla`: a target is listed when it is `breached`
-- (counted at satisfied_at, or due_at when never satisfied) or `active_breached`
-- (counted at due_at) within [$from, $to). team and agent as in `sla`: in force when the
-- target was satisfied, else at its due time; agent `unassigned` when nobody had it.
-- Parameters: $from $to $now $team $agent $channel $inbox $priority
WITH t AS (
  SELECT st.conversation_id, st.policy, st.metric, st.team,
         COALESCE(st.agent, 'unassigned') AS agent, st.channel, st.inbox, st.priority,
         st.applied_at, st.due_at, st.satisfied_at, st.closed_at, st.target_s, st.outcome,
         CASE
           WHEN st.satisfied_at IS NOT NULL AND st.satisfied_at > st.due_at THEN 'breached'
           WHEN st.satisfied_at IS NULL AND st.closed_at IS NOT NULL
                AND st.closed_at >= st.due_at THEN 'breached'
           WHEN st.satisfied_at IS NULL AND st.closed_at IS NULL
                AND st.due_at <= $now THEN 'active_breached'
         END AS state
  FROM sla_targets st
  -- Implied by the range test below; lets the scan skip files.
  WHERE (st.satisfied_at >= $from AND st.satisfied_at < $to)
     OR (st.due_at >= $from AND st.due_at < $to)
)
SELECT conversation_id, policy, metric, state, team, agent, channel, inbox, priority,
       applied_at, due_at, satisfied_at, closed_at, target_s,
       seconds_between(due_at, COALESCE(satisfied_at, closed_at, $now)) AS overdue_s,
       outcome
FROM t
WHERE state IS NOT NULL
  AND COALESCE(satisfied_at, due_at) >= $from AND COALESCE(satisfied_at, due_at) < $to
  AND ($team IS NULL OR team = $team) AND ($agent IS NULL OR agent = $agent)
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
ORDER BY due_at, conversation_id, metric
