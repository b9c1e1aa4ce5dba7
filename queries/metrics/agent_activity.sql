-- agent_activity: what each agent did and how their time was spent.
--
-- Per agent and interval:
--   value / handled   conversations the agent resolved with a reply (answered, resolved in
--                     the interval, agent in force at resolution)
--   handle_mean_s     their mean handle time (TMA, calendar seconds)
--   messages_sent     public messages the agent sent (`conversation_messages`: messages
--                     of a conversation; private notes are not messages)
--   available_s, paused_s, offline_s
--                     seconds in each status (`agent_status_intervals`), clipped to the
--                     interval, to [$from, $to) and to $now
--   paused_reasons    paused seconds by reason, as `reason=seconds` pairs
-- Always grouped by agent.
-- Parameters: $from $to $interval $tz $now $agent
-- Each source (status stretches, resolutions, messages) is read once and summed per agent
-- and bucket (status time also per pause reason); the sums are then put together.
WITH b AS (
  SELECT unnest(bucket_starts($from, $to, $interval, $tz)) AS bucket_start
),
buckets AS (
  SELECT bucket_start, bucket_end(bucket_start, $interval, $tz) AS bucket_end FROM b
),
status_time AS (
  SELECT i.agent_id AS agent, k.bucket_start, i.status,
         COALESCE(i.reason, 'unspecified') AS reason,
         greatest(0.0, seconds_between(
           greatest(i.from_ts, k.bucket_start, $from),
           least(COALESCE(i.to_ts, $now), k.bucket_end, $to, $now))) AS secs
  FROM agent_status_intervals i
  JOIN buckets k ON i.from_ts < k.bucket_end AND COALESCE(i.to_ts, $now) > k.bucket_start
  WHERE i.from_ts < $to AND COALESCE(i.to_ts, $now) > $from
    AND (i.to_ts IS NULL OR i.to_ts > $from)  -- implied; lets the scan skip old files
),
sums AS (
  SELECT agent, bucket_start, CASE WHEN status = 'paused' THEN reason END AS reason,
         0 AS handled, CAST(NULL AS DOUBLE) AS handle_sum_s, 0 AS handle_count,
         0 AS messages_sent,
         sum(secs) FILTER (WHERE status = 'available') AS available_s,
         sum(secs) FILTER (WHERE status = 'paused') AS paused_s,
         sum(secs) FILTER (WHERE status = 'offline') AS offline_s
  FROM status_time
  GROUP BY 1, 2, 3
  UNION ALL
  SELECT agent_resolved, bucket_start(resolved_at, $interval, $tz), NULL,
         count(*), sum(handle_s), count(handle_s), 0, NULL, NULL, NULL
  FROM conversations
  WHERE outcome = 'answered' AND agent_resolved IS NOT NULL
    AND resolved_at >= $from AND resolved_at < $to
  GROUP BY 1, 2
  UNION ALL
  SELECT agent, bucket_start(ts, $interval, $tz), NULL, 0, NULL, 0, count(*), NULL, NULL, NULL
  FROM conversation_messages
  WHERE kind = 'message_out' AND author = 'agent' AND agent IS NOT NULL
    AND ts >= $from AND ts < $to
  GROUP BY 1, 2
)
SELECT agent AS grp, bucket_start, bucket_end(bucket_start, $interval, $tz) AS bucket_end,
       sum(handled) AS value,
       sum(handled) AS handled,
       sum(handle_sum_s) / NULLIF(sum(handle_count), 0) AS handle_mean_s,
       sum(messages_sent) AS messages_sent,
       COALESCE(sum(available_s), 0.0) AS available_s,
       COALESCE(sum(paused_s), 0.0) AS paused_s,
       COALESCE(sum(offline_s), 0.0) AS offline_s,
       string_agg(reason || '=' || CAST(round(paused_s) AS VARCHAR), ',' ORDER BY reason)
         FILTER (WHERE reason IS NOT NULL) AS paused_reasons
FROM sums
WHERE $agent IS NULL OR agent = $agent
GROUP BY agent, bucket_start
ORDER BY 1, 2
