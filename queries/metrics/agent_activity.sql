-- agent_activity: what each agent did and how their time was spent.
--
-- Per agent and interval:
--   value / handled   conversations the agent resolved with a reply (answered, resolved in
--                     the interval, agent in force at resolution)
--   handle_mean_s     their mean handle time (TMA, calendar seconds)
--   messages_sent     public messages the agent sent
--   available_s, paused_s, offline_s
--                     seconds in each status (`agent_status_intervals`), clipped to the
--                     interval, to [$from, $to) and to $now
--   paused_reasons    paused seconds by reason, as `reason=seconds` pairs
-- Always grouped by agent.
-- Parameters: $from $to $interval $tz $now $agent
WITH b AS (
  SELECT unnest(bucket_starts($from, $to, $interval, $tz)) AS bucket_start
),
buckets AS (
  SELECT bucket_start, bucket_end(bucket_start, $interval, $tz) AS bucket_end FROM b
),
status_time AS (
  SELECT i.agent_id AS agent, k.bucket_start, k.bucket_end, i.status,
         COALESCE(i.reason, 'unspecified') AS reason,
         greatest(0.0, seconds_between(
           greatest(i.from_ts, k.bucket_start, $from),
           least(COALESCE(i.to_ts, $now), k.bucket_end, $to, $now))) AS secs
  FROM agent_status_intervals i
  JOIN buckets k ON i.from_ts < k.bucket_end AND COALESCE(i.to_ts, $now) > k.bucket_start
  WHERE i.from_ts < $to AND COALESCE(i.to_ts, $now) > $from
),
reasons AS (
  SELECT agent, bucket_start, reason, sum(secs) AS secs
  FROM status_time WHERE status = 'paused'
  GROUP BY agent, bucket_start, reason
),
time_use AS (
  SELECT s.agent, s.bucket_start, min(s.bucket_end) AS bucket_end,
         sum(s.secs) FILTER (WHERE s.status = 'available') AS available_s,
         sum(s.secs) FILTER (WHERE s.status = 'paused') AS paused_s,
         sum(s.secs) FILTER (WHERE s.status = 'offline') AS offline_s
  FROM status_time s
  GROUP BY s.agent, s.bucket_start
),
reason_list AS (
  SELECT agent, bucket_start,
         string_agg(reason || '=' || CAST(round(secs) AS VARCHAR), ',' ORDER BY reason) AS paused_reasons
  FROM reasons GROUP BY agent, bucket_start
),
handled AS (
  SELECT agent_resolved AS agent, bucket_start(resolved_at, $interval, $tz) AS bucket_start,
         count(*) AS handled, avg(handle_s) AS handle_mean_s
  FROM conversations
  WHERE outcome = 'answered' AND agent_resolved IS NOT NULL
    AND resolved_at >= $from AND resolved_at < $to
  GROUP BY 1, 2
),
sent AS (
  SELECT agent_id AS agent, bucket_start(ts, $interval, $tz) AS bucket_start,
         count(*) AS messages_sent
  FROM conversation_events
  WHERE kind = 'message_out' AND author = 'agent' AND NOT private AND agent_id IS NOT NULL
    AND ts >= $from AND ts < $to
  GROUP BY 1, 2
),
keys AS (
  SELECT agent, bucket_start FROM time_use
  UNION SELECT agent, bucket_start FROM handled
  UNION SELECT agent, bucket_start FROM sent
)
SELECT k.agent AS grp, k.bucket_start, bucket_end(k.bucket_start, $interval, $tz) AS bucket_end,
       COALESCE(h.handled, 0) AS value,
       COALESCE(h.handled, 0) AS handled,
       h.handle_mean_s,
       COALESCE(m.messages_sent, 0) AS messages_sent,
       COALESCE(u.available_s, 0.0) AS available_s,
       COALESCE(u.paused_s, 0.0) AS paused_s,
       COALESCE(u.offline_s, 0.0) AS offline_s,
       r.paused_reasons
FROM keys k
LEFT JOIN handled h ON h.agent = k.agent AND h.bucket_start = k.bucket_start
LEFT JOIN sent m ON m.agent = k.agent AND m.bucket_start = k.bucket_start
LEFT JOIN time_use u ON u.agent = k.agent AND u.bucket_start = k.bucket_start
LEFT JOIN reason_list r ON r.agent = k.agent AND r.bucket_start = k.bucket_start
WHERE $agent IS NULL OR k.agent = $agent
ORDER BY 1, 2
