-- open_conversations: the backlog, sampled at the end of each interval.
--
-- At an instant t a conversation is open when one of its open stretches
-- (`conversation_intervals`) holds t: started (or reopened) at or before t and not resolved
-- by t. Of those, `waiting` have reached the human queue and have no agent reply yet, and
-- `unassigned` have reached the queue and no agent yet. t is the end of each interval, or
-- $to or $now when those come first (the current interval is sampled now). Team and agent
-- are the ones in force at t; channel, inbox and priority the conversation's latest. A
-- conversation that has not reached the human queue by t (a bot has it) is the agent group
-- `bot`, and the team group `bot` unless an event named a team; one in the queue with no
-- agent is the agent group `unassigned`.
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
-- Which samples fall in a stretch is looked up with `sample_buckets` (the buckets whose
-- sample instant lies in [open_from, open_to)) and then checked again here; the static
-- bounds (open_from <= $to, ending after the earliest sample) follow from that check and
-- let the scans skip files of long-closed conversations.
open_at AS (
  SELECT DISTINCT s.bucket_start, s.bucket_end, s.at, i.conversation_id,
         i.queued_at, i.assigned_at, i.first_response_at, i.channel, i.inbox, i.priority
  FROM (
    SELECT *, unnest(sample_buckets(open_from, open_to, $from, $to, $interval, $tz, $now)) AS bucket
    FROM conversation_intervals
    WHERE open_from <= $to AND (open_to IS NULL OR open_to > least($from, $now))
      AND cardinality(sample_buckets(open_from, open_to, $from, $to, $interval, $tz, $now)) > 0
  ) i
  JOIN samples s ON s.bucket_start = i.bucket
  WHERE i.open_from <= s.at AND (i.open_to IS NULL OR i.open_to > s.at)
),
-- The team and agent in force at a sample: the owners row with ts <= at < valid_to (there
-- is at most one, see `conversation_owners`), found the same way. Joined back by bucket,
-- not by instant: when "now" falls on a bucket boundary, the bucket that ends there and
-- the one that starts there are both sampled at "now".
owners_at AS (
  SELECT s.bucket_start, s.at, w.conversation_id, w.team, NULLIF(w.agent_in_force, '') AS agent
  FROM (
    SELECT *, unnest(sample_buckets(ts, valid_to, $from, $to, $interval, $tz, $now)) AS bucket
    FROM conversation_owners
    WHERE ts <= $to AND (valid_to IS NULL OR valid_to > least($from, $now))
      AND cardinality(sample_buckets(ts, valid_to, $from, $to, $interval, $tz, $now)) > 0
  ) w
  JOIN samples s ON s.bucket_start = w.bucket
  WHERE w.ts <= s.at AND (w.valid_to IS NULL OR w.valid_to > s.at)
),
x AS (
  SELECT o.bucket_start, o.bucket_end, o.at,
         COALESCE(f.team, CASE WHEN o.queued_at IS NULL OR o.queued_at > o.at THEN 'bot' END) AS team,
         COALESCE(f.agent, CASE WHEN o.queued_at IS NULL OR o.queued_at > o.at THEN 'bot'
                                ELSE 'unassigned' END) AS agent,
         o.channel, o.inbox, o.priority,
         o.queued_at IS NOT NULL AND o.queued_at <= o.at
           AND (o.first_response_at IS NULL OR o.first_response_at > o.at) AS waiting,
         o.queued_at IS NOT NULL AND o.queued_at <= o.at
           AND (o.assigned_at IS NULL OR o.assigned_at > o.at) AS unassigned,
         seconds_between(o.queued_at, o.at) AS waited_s
  FROM open_at o
  LEFT JOIN owners_at f ON f.conversation_id = o.conversation_id AND f.bucket_start = o.bucket_start
)
SELECT CASE WHEN $group_by = 'team' THEN team WHEN $group_by = 'agent' THEN agent
            WHEN $group_by = 'channel' THEN channel WHEN $group_by = 'inbox' THEN inbox
            WHEN $group_by = 'priority' THEN priority ELSE 'all' END AS grp,
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
