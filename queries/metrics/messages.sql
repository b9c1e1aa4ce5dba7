-- messages: messages exchanged per interval.
--
-- Counts message_in (customer → business) and public message_out (agent or bot →
-- customer; private notes are not messages) by the time they were sent. Team, agent and
-- the other dimensions are those in force at each message (an agent message counts for
-- its sender; see the view `conversation_messages`). A message sent while only a bot had
-- the conversation (before it reached the human queue) is the agent group `bot`, and the
-- team group `bot` unless an event named a team; a later one with no agent in force is
-- the agent group `unassigned`. Messages outside any conversation are not counted.
-- Reported: value = all messages, messages_in, messages_out, from_agents, from_bots.
-- Parameters: $from $to $interval $tz $group_by $team $agent $channel $inbox $priority
WITH x AS (
  SELECT ts AS at, kind, author,
         COALESCE(team, CASE WHEN before_queue THEN 'bot' END) AS team,
         COALESCE(agent, CASE WHEN before_queue THEN 'bot' ELSE 'unassigned' END) AS agent,
         channel, inbox, priority
  FROM conversation_messages
  WHERE ts >= $from AND ts < $to
)
SELECT CASE WHEN $group_by = 'team' THEN team WHEN $group_by = 'agent' THEN agent
            WHEN $group_by = 'channel' THEN channel WHEN $group_by = 'inbox' THEN inbox
            WHEN $group_by = 'priority' THEN priority ELSE 'all' END AS grp,
       bucket_start(at, $interval, $tz) AS bucket_start,
       bucket_end(at, $interval, $tz) AS bucket_end,
       count(*) AS value,
       count(*) FILTER (WHERE kind = 'message_in') AS messages_in,
       count(*) FILTER (WHERE kind = 'message_out') AS messages_out,
       count(*) FILTER (WHERE kind = 'message_out' AND author = 'agent') AS from_agents,
       count(*) FILTER (WHERE kind = 'message_out' AND author = 'bot') AS from_bots
FROM x
WHERE ($team IS NULL OR team = $team) AND ($agent IS NULL OR agent = $agent)
  AND ($channel IS NULL OR channel = $channel) AND ($inbox IS NULL OR inbox = $inbox)
  AND ($priority IS NULL OR priority = $priority)
GROUP BY 1, 2, 3
ORDER BY 1, 2
