-- conversation_links: the conversation each loose customer message belongs to (a message a
-- source reported without a conversation, as WhatsApp does). One row per such message:
-- event_id, conv. Computed once per session.
--
-- Definition
-- * A customer message without a conversation belongs to that customer's latest
--   conversation that started no later than `link_grace` after the message (platforms open
--   the conversation just after its first message), provided that conversation is open at
--   the message, or was resolved less than `session_gap` before it (a "thank you" after the
--   resolution is part of the conversation, not a new one). `message_links` finds it.
-- * If a source also reported the same message inside a conversation (same kind and
--   `message_id`), the copy without a conversation is dropped: each message counts once.
-- * Customer messages that belong to no conversation make sessions of their own: a new
--   session starts after `session_gap` of silence. Its key is
--   `session:<customer_key>:<first message, µs since the epoch>`.
WITH orphans AS (
  SELECT event_id, customer_key, ts_us,
         CASE WHEN ts_us - lag(ts_us) OVER (PARTITION BY customer_key ORDER BY ts_us, event_id)
                   <= (SELECT session_gap_us FROM settings)
              THEN 0 ELSE 1 END AS starts_session
  FROM message_links
  WHERE conv IS NULL
),
numbered AS (
  SELECT event_id, customer_key, ts_us,
         sum(starts_session) OVER (PARTITION BY customer_key ORDER BY ts_us, event_id
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no
  FROM orphans
)
SELECT event_id, conv FROM message_links WHERE conv IS NOT NULL
UNION ALL
SELECT event_id,
       'session:' || customer_key || ':'
         || CAST(min(ts_us) OVER (PARTITION BY customer_key, session_no) AS VARCHAR) AS conv
FROM numbered
