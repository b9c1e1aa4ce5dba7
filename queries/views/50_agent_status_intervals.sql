-- agent_status_intervals: each agent's status over time, one row per stretch.
--
-- Definition: an `agent_status` event starts a stretch in that status (`available`,
-- `paused` with its reason, `offline`) that lasts until the agent's next status event;
-- `to_ts` is NULL for the current one.
SELECT agent_id, ts AS from_ts,
       lead(ts) OVER (PARTITION BY agent_id ORDER BY ts, event_id) AS to_ts,
       status, reason
FROM events
WHERE kind = 'agent_status' AND agent_id IS NOT NULL
