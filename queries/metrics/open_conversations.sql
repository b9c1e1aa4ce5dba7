-- open_conversations: the backlog, sampled at the end of each interval.
--
-- At an instant t a conversation is open when one of its open stretches
-- (`conversation_intervals`) holds t: started (or reopened) at or before t and not resolved
-- by t. Of those, `waiting` have reached the human queue and have no agent reply yet, and
-- `unassigned` have reached the queue and no agent yet. t is the end of each interval, or
-- $to or $now when those come first (the current interval is sampled now). Team and agent
-- are the ones in force at t; channel, inbox and priority the conversation's latest.
-- Reported: value (open), waiting, unassigned, longest_wait_s (the longest current wait
-- among the waiting, calendar seconds), sampled_at.
-- Parameters: $from $to $interval $tz $group_by $now $team $agent $channel $inbox $priority
WITH b AS (
  SELECT unnest(bucket_starts($from, $to, $interval, $tz)) AS bucket_start
),
samples AS (
  SELECT bucket_start, bucket_end(bucket_start, $interval, $tz) AS bucket_end,
         least(bucket_end(bucket_start, $interval, $tz), $to, $now) AS at
  FROM b
  WHERE bucket_start <= $now
),
open_at AS (
  SELECT DISTINCT s.bucket_start, s.bucket_end, s.at, i.conversation_id
  FROM samples s JOIN conversation_intervals i
    ON i.open_from <= s.at AND (i.open_to IS NULL OR i.open_to > s.at)
),
in_force AS (
  SELECT o.conversation_id, o.at,
         last_value(w.team ORDER BY w.ts, w.kind_rank, w.event_id) FILTER (WHERE w.team IS NOT NULL) AS team,
         NULLIF(last_value(w.agent_in_force ORDER BY w.ts, w.kind_rank, w.event_id)
           FILTER (WHERE w.agent_in_force IS NOT NULL), '') AS agent
  FROM open_at o JOIN conversation_owners w
    ON w.conversation_id = o.conversation_id AND w.ts <= o.at
  GROUP BY o.conversation_id, o.at
),
x AS (
  SELECT o.bucket_start, o.bucket_end, o.at, f.team, f.agent, c.channel, c.inbox, c.priority,
         c.queued_at IS NOT NULL AND c.queued_at <= o.at
           AND (c.first_response_at IS NULL OR c.first_response_at > o.at) AS waiting,
         c.queued_at IS NOT NULL AND c.queued_at <= o.at
           AND (c.assigned_at IS NULL OR c.assigned_at > o.at) AS unassigned,
         seconds_between(c.queued_at, o.at) AS waited_s
  FROM open_at o
  JOIN conversations c ON c.conversation_id = o.conversation_id
  LEFT JOIN in_force f ON f.conversation_id = o.conversation_id AND f.at = o.at
)
SELECT CASE $group_by
         WHEN 'team' THEN team WHEN 'agent' THEN agent WHEN 'channel' THEN channel
         WHEN 'inbox' THEN inbox WHEN 'priority' THEN priority ELSE 'all' END AS grp,
       bucket_start, bucket_end,
       count(*) AS value,
       count(*) FILTER (WHERE waiting) AS waiting,
       count(*) FILTER (WHERE unassigned) AS unassigned,
       max(waited_s) FILTER (WHERE waiting) AS longest_wait_s,
       min(at) AS sampled_at
FROM x
WHERE ($team IS NULL OR team = $team) AND ($agent IS NULL OR agent = $agent)
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
GROUP BY 1, 2, 3
ORDER BY 1, 2
