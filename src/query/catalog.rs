//! The SQL that defines the product, embedded from `queries/` so the binary is self-contained.
//!
//! `queries/views/NN_name.sql` are registered as views named `name`, in file order (later
//! views read earlier ones). `queries/metrics/name.sql` are the metric queries, run with
//! named parameters (`$from`, `$to`, …) bound, never formatted in.

/// (view name, SQL), in registration order.
pub const VIEWS: [(&str, &str); 9] = [
    (
        "message_links",
        include_str!("../../queries/views/10_message_links.sql"),
    ),
    (
        "conversation_links",
        include_str!("../../queries/views/11_conversation_links.sql"),
    ),
    (
        "conversation_events",
        include_str!("../../queries/views/12_conversation_events.sql"),
    ),
    (
        "conversations",
        include_str!("../../queries/views/20_conversations.sql"),
    ),
    (
        "conversation_intervals",
        include_str!("../../queries/views/30_conversation_intervals.sql"),
    ),
    (
        "conversation_owners",
        include_str!("../../queries/views/35_conversation_owners.sql"),
    ),
    (
        "conversation_messages",
        include_str!("../../queries/views/36_conversation_messages.sql"),
    ),
    (
        "sla_targets",
        include_str!("../../queries/views/40_sla_targets.sql"),
    ),
    (
        "agent_status_intervals",
        include_str!("../../queries/views/50_agent_status_intervals.sql"),
    ),
];

/// The views computed once per session and kept in memory (see [`super::cached`]): they are
/// expensive and read by several other views.
pub const CACHED_VIEWS: [&str; 7] = [
    "message_links",
    "conversation_links",
    "conversations",
    "conversation_intervals",
    "conversation_owners",
    "conversation_messages",
    "sla_targets",
];

/// (metric name, SQL).
pub const METRICS: [(&str, &str); 13] = [
    ("wait", include_str!("../../queries/metrics/wait.sql")),
    (
        "wait_to_assign",
        include_str!("../../queries/metrics/wait_to_assign.sql"),
    ),
    (
        "first_response",
        include_str!("../../queries/metrics/first_response.sql"),
    ),
    ("handle", include_str!("../../queries/metrics/handle.sql")),
    (
        "resolution",
        include_str!("../../queries/metrics/resolution.sql"),
    ),
    (
        "open_conversations",
        include_str!("../../queries/metrics/open_conversations.sql"),
    ),
    (
        "messages",
        include_str!("../../queries/metrics/messages.sql"),
    ),
    (
        "service_level",
        include_str!("../../queries/metrics/service_level.sql"),
    ),
    (
        "abandonment",
        include_str!("../../queries/metrics/abandonment.sql"),
    ),
    ("csat", include_str!("../../queries/metrics/csat.sql")),
    ("sla", include_str!("../../queries/metrics/sla.sql")),
    (
        "agent_activity",
        include_str!("../../queries/metrics/agent_activity.sql"),
    ),
    (
        "sla_breaches",
        include_str!("../../queries/metrics/sla_breaches.sql"),
    ),
];

/// The SQL of a metric query by name.
pub fn metric_sql(name: &str) -> Option<&'static str> {
    METRICS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The header comment of a SQL file: its definition in business terms.
pub fn header(sql: &str) -> String {
    sql.lines()
        .take_while(|l| l.starts_with("--"))
        .map(|l| l.trim_start_matches("--").trim_start_matches(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The row-level drill-down behind charts and headline numbers.
pub const CONVERSATIONS_SQL: &str = include_str!("../../queries/drilldown/conversations.sql");
