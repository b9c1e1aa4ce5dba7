//! The canonical event: the one row shape every source is decoded into and the lake stores.
//!
//! Vocabulary used across the crate:
//! - **event**: one fact as a source reported it (a message arrived, a conversation was
//!   assigned, an agent paused). Events are stored as received and never edited.
//! - **event id**: the event's unique key. Delivering an event twice stores it once.
//! - **kind**: what happened, one of [`Kind`].
//! - **customer key**: the pseudonymized identity of the customer (see [`crate::pseudonym`]);
//!   the raw phone number never reaches an [`Event`].
//!
//! [`schema`] is the single Arrow schema of the `events` table; the lake writer, the lake
//! reader and the query layer all take it from here.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int8Array, Int8Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};

/// What happened. The string forms are the values of the `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ConversationOpened,
    /// Handed to the human queue (after a bot, or by routing).
    ConversationQueued,
    ConversationAssigned,
    ConversationTransferred,
    ConversationResolved,
    ConversationReopened,
    /// Customer → business.
    MessageIn,
    /// Agent or bot → customer (or an agent's private note, marked in `attrs`).
    MessageOut,
    /// Something that happened to a message (`message_id`): delivered, read, failed… or
    /// edited, deleted, reacted to. An edit, deletion or reaction is stored as this, never as
    /// a message, so it counts in no message metric.
    MessageStatus,
    CsatSubmitted,
    AgentStatus,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::ConversationOpened,
        Kind::ConversationQueued,
        Kind::ConversationAssigned,
        Kind::ConversationTransferred,
        Kind::ConversationResolved,
        Kind::ConversationReopened,
        Kind::MessageIn,
        Kind::MessageOut,
        Kind::MessageStatus,
        Kind::CsatSubmitted,
        Kind::AgentStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ConversationOpened => "conversation_opened",
            Kind::ConversationQueued => "conversation_queued",
            Kind::ConversationAssigned => "conversation_assigned",
            Kind::ConversationTransferred => "conversation_transferred",
            Kind::ConversationResolved => "conversation_resolved",
            Kind::ConversationReopened => "conversation_reopened",
            Kind::MessageIn => "message_in",
            Kind::MessageOut => "message_out",
            Kind::MessageStatus => "message_status",
            Kind::CsatSubmitted => "csat_submitted",
            Kind::AgentStatus => "agent_status",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which decoder produced the event (the `source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    WhatsApp,
    Chatwoot,
    AgentLog,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::WhatsApp => "whatsapp",
            Source::Chatwoot => "chatwoot",
            Source::AgentLog => "agent_log",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "whatsapp" => Some(Source::WhatsApp),
            "chatwoot" => Some(Source::Chatwoot),
            "agent_log" => Some(Source::AgentLog),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who wrote a message (the `author` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Author {
    Customer,
    Agent,
    Bot,
    System,
}

impl Author {
    pub fn as_str(self) -> &'static str {
        match self {
            Author::Customer => "customer",
            Author::Agent => "agent",
            Author::Bot => "bot",
            Author::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Author> {
        match s {
            "customer" => Some(Author::Customer),
            "agent" => Some(Author::Agent),
            "bot" => Some(Author::Bot),
            "system" => Some(Author::System),
            _ => None,
        }
    }
}

macro_rules! serialize_as_str {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}
serialize_as_str!(Kind, Source, Author);

/// One canonical event, owned. Decoders hand [`EventRef`]s to an [`EventSink`]; this owned
/// form is what tests, the generator's checks and small tools work with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub event_id: String,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub source: Source,
    pub kind: Kind,
    pub conversation_id: Option<String>,
    pub customer_key: Option<String>,
    pub agent_id: Option<String>,
    pub team: Option<String>,
    pub channel: Option<String>,
    pub inbox: Option<String>,
    pub priority: Option<String>,
    pub author: Option<Author>,
    pub message_id: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub csat_score: Option<i8>,
    /// Compact JSON object with sorted keys, or `None`.
    pub attrs: Option<String>,
}

/// A borrowed view of an event, so decoders can emit rows straight from the input buffer
/// without allocating a `String` per field.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub event_id: &'a str,
    /// Microseconds since the Unix epoch, UTC.
    pub ts: i64,
    pub source: Source,
    pub kind: Kind,
    pub conversation_id: Option<&'a str>,
    pub customer_key: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub team: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub inbox: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub author: Option<Author>,
    pub message_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub csat_score: Option<i8>,
    pub attrs: Option<&'a str>,
}

impl<'a> EventRef<'a> {
    /// An event with only the required fields set.
    pub fn new(event_id: &'a str, ts: i64, source: Source, kind: Kind) -> Self {
        EventRef {
            event_id,
            ts,
            source,
            kind,
            conversation_id: None,
            customer_key: None,
            agent_id: None,
            team: None,
            channel: None,
            inbox: None,
            priority: None,
            author: None,
            message_id: None,
            status: None,
            reason: None,
            csat_score: None,
            attrs: None,
        }
    }
}

impl Event {
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            event_id: &self.event_id,
            ts: self.ts.timestamp_micros(),
            source: self.source,
            kind: self.kind,
            conversation_id: self.conversation_id.as_deref(),
            customer_key: self.customer_key.as_deref(),
            agent_id: self.agent_id.as_deref(),
            team: self.team.as_deref(),
            channel: self.channel.as_deref(),
            inbox: self.inbox.as_deref(),
            priority: self.priority.as_deref(),
            author: self.author,
            message_id: self.message_id.as_deref(),
            status: self.status.as_deref(),
            reason: self.reason.as_deref(),
            csat_score: self.csat_score,
            attrs: self.attrs.as_deref(),
        }
    }

    fn from_ref(e: &EventRef<'_>, received_at: DateTime<Utc>) -> Event {
        let own = |s: Option<&str>| s.map(str::to_owned);
        Event {
            event_id: e.event_id.to_owned(),
            ts: micros_to_datetime(e.ts),
            received_at,
            source: e.source,
            kind: e.kind,
            conversation_id: own(e.conversation_id),
            customer_key: own(e.customer_key),
            agent_id: own(e.agent_id),
            team: own(e.team),
            channel: own(e.channel),
            inbox: own(e.inbox),
            priority: own(e.priority),
            author: e.author,
            message_id: own(e.message_id),
            status: own(e.status),
            reason: own(e.reason),
            csat_score: e.csat_score,
            attrs: own(e.attrs),
        }
    }
}

/// Converts microseconds since the epoch to a UTC instant. Values are produced by our own
/// decoders within 2000..2100, so the out-of-range branch only guards against misuse.
pub fn micros_to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Where decoders put the events they produce.
pub trait EventSink {
    fn push(&mut self, event: &EventRef<'_>);
}

/// Collects owned events; `received_at` is stamped on each.
pub struct VecSink {
    pub events: Vec<Event>,
    pub received_at: DateTime<Utc>,
}

impl VecSink {
    pub fn new(received_at: DateTime<Utc>) -> Self {
        VecSink {
            events: Vec::new(),
            received_at,
        }
    }
}

impl EventSink for VecSink {
    fn push(&mut self, event: &EventRef<'_>) {
        self.events.push(Event::from_ref(event, self.received_at));
    }
}

/// The time zone string of every timestamp column: instants in UTC, so Parquet marks them
/// `isAdjustedToUTC = true` and other engines read them as `TIMESTAMP WITH TIME ZONE`.
pub const UTC: &str = "UTC";

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
}

/// Column names, in schema order.
pub mod col {
    pub const EVENT_ID: &str = "event_id";
    pub const TS: &str = "ts";
    pub const RECEIVED_AT: &str = "received_at";
    pub const SOURCE: &str = "source";
    pub const KIND: &str = "kind";
    pub const CONVERSATION_ID: &str = "conversation_id";
    pub const CUSTOMER_KEY: &str = "customer_key";
    pub const AGENT_ID: &str = "agent_id";
    pub const TEAM: &str = "team";
    pub const CHANNEL: &str = "channel";
    pub const INBOX: &str = "inbox";
    pub const PRIORITY: &str = "priority";
    pub const AUTHOR: &str = "author";
    pub const MESSAGE_ID: &str = "message_id";
    pub const STATUS: &str = "status";
    pub const REASON: &str = "reason";
    pub const CSAT_SCORE: &str = "csat_score";
    pub const ATTRS: &str = "attrs";
}

/// The schema of the `events` table as stored in Parquet (the `date` partition column is
/// not stored in the files; it lives in the directory name).
pub fn schema() -> SchemaRef {
    use col::*;
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s(EVENT_ID, false),
        Field::new(TS, ts_type(), false),
        Field::new(RECEIVED_AT, ts_type(), false),
        s(SOURCE, false),
        s(KIND, false),
        s(CONVERSATION_ID, true),
        s(CUSTOMER_KEY, true),
        s(AGENT_ID, true),
        s(TEAM, true),
        s(CHANNEL, true),
        s(INBOX, true),
        s(PRIORITY, true),
        s(AUTHOR, true),
        s(MESSAGE_ID, true),
        s(STATUS, true),
        s(REASON, true),
        Field::new(CSAT_SCORE, DataType::Int8, true),
        s(ATTRS, true),
    ]))
}

/// Builds a [`RecordBatch`] of [`schema`] row by row. Also an [`EventSink`], so decoders can
/// write into it directly.
pub struct EventBatchBuilder {
    event_id: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    source: StringBuilder,
    kind: StringBuilder,
    conversation_id: StringBuilder,
    customer_key: StringBuilder,
    agent_id: StringBuilder,
    team: StringBuilder,
    channel: StringBuilder,
    inbox: StringBuilder,
    priority: StringBuilder,
    author: StringBuilder,
    message_id: StringBuilder,
    status: StringBuilder,
    reason: StringBuilder,
    csat_score: Int8Builder,
    attrs: StringBuilder,
    received_at_value: i64,
    len: usize,
}

impl EventBatchBuilder {
    /// `received_at` is stamped on every row pushed until [`Self::set_received_at`].
    pub fn new(received_at: DateTime<Utc>) -> Self {
        EventBatchBuilder {
            event_id: StringBuilder::new(),
            ts: TimestampMicrosecondBuilder::new(),
            received_at: TimestampMicrosecondBuilder::new(),
            source: StringBuilder::new(),
            kind: StringBuilder::new(),
            conversation_id: StringBuilder::new(),
            customer_key: StringBuilder::new(),
            agent_id: StringBuilder::new(),
            team: StringBuilder::new(),
            channel: StringBuilder::new(),
            inbox: StringBuilder::new(),
            priority: StringBuilder::new(),
            author: StringBuilder::new(),
            message_id: StringBuilder::new(),
            status: StringBuilder::new(),
            reason: StringBuilder::new(),
            csat_score: Int8Builder::new(),
            attrs: StringBuilder::new(),
            received_at_value: received_at.timestamp_micros(),
            len: 0,
        }
    }

    pub fn set_received_at(&mut self, received_at: DateTime<Utc>) {
        self.received_at_value = received_at.timestamp_micros();
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the rows pushed so far as a batch and leaves the builder empty.
    pub fn finish(&mut self) -> RecordBatch {
        let utc = |a: TimestampMicrosecondArray| a.with_timezone(UTC);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(utc(self.ts.finish())),
            Arc::new(utc(self.received_at.finish())),
            Arc::new(self.source.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.conversation_id.finish()),
            Arc::new(self.customer_key.finish()),
            Arc::new(self.agent_id.finish()),
            Arc::new(self.team.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.inbox.finish()),
            Arc::new(self.priority.finish()),
            Arc::new(self.author.finish()),
            Arc::new(self.message_id.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.csat_score.finish()),
            Arc::new(self.attrs.finish()),
        ];
        self.len = 0;
        // The columns are built to match `schema()` field by field, so this cannot fail.
        RecordBatch::try_new(schema(), columns)
            .unwrap_or_else(|e| unreachable!("event batch does not match its own schema: {e}"))
    }
}

impl EventSink for EventBatchBuilder {
    fn push(&mut self, e: &EventRef<'_>) {
        self.event_id.append_value(e.event_id);
        self.ts.append_value(e.ts);
        self.received_at.append_value(self.received_at_value);
        self.source.append_value(e.source.as_str());
        self.kind.append_value(e.kind.as_str());
        self.conversation_id.append_option(e.conversation_id);
        self.customer_key.append_option(e.customer_key);
        self.agent_id.append_option(e.agent_id);
        self.team.append_option(e.team);
        self.channel.append_option(e.channel);
        self.inbox.append_option(e.inbox);
        self.priority.append_option(e.priority);
        self.author.append_option(e.author.map(Author::as_str));
        self.message_id.append_option(e.message_id);
        self.status.append_option(e.status);
        self.reason.append_option(e.reason);
        self.csat_score.append_option(e.csat_score);
        self.attrs.append_option(e.attrs);
        self.len += 1;
    }
}

/// Errors reading events back from a batch that does not have the events schema.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("column `{0}` is missing or has the wrong type")]
    Column(&'static str),
    #[error("row {row}: `{column}` holds an unknown value {value:?}")]
    Value {
        row: usize,
        column: &'static str,
        value: String,
    },
}

/// Reads owned events back out of a batch of [`schema`] (tests and tools; the hot paths stay
/// columnar).
pub fn events_from_batch(batch: &RecordBatch) -> Result<Vec<Event>, BatchError> {
    fn strings<'b>(b: &'b RecordBatch, name: &'static str) -> Result<&'b StringArray, BatchError> {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or(BatchError::Column(name))
    }
    fn times<'b>(
        b: &'b RecordBatch,
        name: &'static str,
    ) -> Result<&'b TimestampMicrosecondArray, BatchError> {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or(BatchError::Column(name))
    }
    fn opt(a: &StringArray, i: usize) -> Option<String> {
        (!a.is_null(i)).then(|| a.value(i).to_owned())
    }
    use col::*;
    let event_id = strings(batch, EVENT_ID)?;
    let ts = times(batch, TS)?;
    let received_at = times(batch, RECEIVED_AT)?;
    let source = strings(batch, SOURCE)?;
    let kind = strings(batch, KIND)?;
    let conversation_id = strings(batch, CONVERSATION_ID)?;
    let customer_key = strings(batch, CUSTOMER_KEY)?;
    let agent_id = strings(batch, AGENT_ID)?;
    let team = strings(batch, TEAM)?;
    let channel = strings(batch, CHANNEL)?;
    let inbox = strings(batch, INBOX)?;
    let priority = strings(batch, PRIORITY)?;
    let author = strings(batch, AUTHOR)?;
    let message_id = strings(batch, MESSAGE_ID)?;
    let status = strings(batch, STATUS)?;
    let reason = strings(batch, REASON)?;
    let csat = batch
        .column_by_name(CSAT_SCORE)
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
        .ok_or(BatchError::Column(CSAT_SCORE))?;
    let attrs = strings(batch, ATTRS)?;
    let bad = |row: usize, column: &'static str, value: &str| BatchError::Value {
        row,
        column,
        value: value.to_owned(),
    };
    (0..batch.num_rows())
        .map(|i| {
            Ok(Event {
                event_id: event_id.value(i).to_owned(),
                ts: micros_to_datetime(ts.value(i)),
                received_at: micros_to_datetime(received_at.value(i)),
                source: Source::parse(source.value(i))
                    .ok_or_else(|| bad(i, SOURCE, source.value(i)))?,
                kind: Kind::parse(kind.value(i)).ok_or_else(|| bad(i, KIND, kind.value(i)))?,
                conversation_id: opt(conversation_id, i),
                customer_key: opt(customer_key, i),
                agent_id: opt(agent_id, i),
                team: opt(team, i),
                channel: opt(channel, i),
                inbox: opt(inbox, i),
                priority: opt(priority, i),
                author: match opt(author, i) {
                    None => None,
                    Some(a) => Some(Author::parse(&a).ok_or_else(|| bad(i, AUTHOR, &a))?),
                },
                message_id: opt(message_id, i),
                status: opt(status, i),
                reason: opt(reason, i),
                csat_score: (!csat.is_null(i)).then(|| csat.value(i)),
                attrs: opt(attrs, i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            event_id: "ev-1".into(),
            ts: "2026-11-02T12:00:00.123456Z".parse().unwrap(),
            received_at: "2026-11-02T12:00:05Z".parse().unwrap(),
            source: Source::AgentLog,
            kind: Kind::MessageOut,
            conversation_id: Some("c-1".into()),
            customer_key: None,
            agent_id: Some("ana".into()),
            team: Some("billing".into()),
            channel: None,
            inbox: None,
            priority: Some("high".into()),
            author: Some(Author::Agent),
            message_id: Some("wamid.1".into()),
            status: None,
            reason: None,
            csat_score: Some(5),
            attrs: Some(r#"{"private":true}"#.into()),
        }
    }

    #[test]
    fn batch_round_trip_keeps_every_field() {
        let e = sample();
        let mut b = EventBatchBuilder::new(e.received_at);
        b.push(&e.as_ref());
        let batch = b.finish();
        assert_eq!(batch.schema(), schema());
        assert_eq!(events_from_batch(&batch).unwrap(), vec![e]);
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("message"), None);
    }
}
