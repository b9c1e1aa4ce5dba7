//! Sources: pure decoders from what a source sends to canonical [`Event`](crate::event::Event)s.
//!
//! Every decoder takes one **record** — one webhook body, or one line of an agent event log —
//! and pushes zero or more events into an [`EventSink`], reporting what it could not take:
//! - a **reject** is input that is wrong (bad JSON, a missing or mistyped field, an unknown
//!   type, an impossible timestamp). It is reported with its [`Position`], the field and the
//!   reason, and the caller keeps the raw record in quarantine.
//! - a **skip** is valid input that carries no fact we store (a Chatwoot `activity` message,
//!   a snooze). Skips are counted by reason, never quarantined.
//!
//! Decoders do no IO and keep no state between records except the pseudonymization cache,
//! so the same bytes always give the same events.

pub mod agent_log;
pub mod chatwoot;
mod json;
pub mod time;
pub mod whatsapp;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::event::{Event, EventSink, VecSink};
use crate::pseudonym::Pseudonymizer;

/// The input formats supportlake decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    /// WhatsApp Cloud API webhook bodies (`object: whatsapp_business_account`).
    WhatsApp,
    /// Chatwoot webhook bodies (`event: conversation_created`, `message_created`, …).
    Chatwoot,
    /// supportlake's agent event log (docs/agent-log.md), one event per line.
    AgentLog,
}

impl SourceFormat {
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::WhatsApp => "whatsapp",
            SourceFormat::Chatwoot => "chatwoot",
            SourceFormat::AgentLog => "agent-log",
        }
    }

    /// Guesses the format of one record from its top-level keys, for `--source auto`.
    pub fn detect(record: &[u8]) -> Option<SourceFormat> {
        let text = std::str::from_utf8(record).ok()?;
        let probe: json::Probe<'_> = serde_json::from_str(text).ok()?;
        if probe.object.as_deref() == Some("whatsapp_business_account") {
            return Some(SourceFormat::WhatsApp);
        }
        if probe.event.is_some() {
            return Some(SourceFormat::Chatwoot);
        }
        if probe.type_.is_some() && probe.ts.is_some() {
            return Some(SourceFormat::AgentLog);
        }
        None
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where in the input a reject came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based record number: the line of a JSON Lines file, or the element of a JSON array
    /// document.
    pub record: u64,
    /// Path inside the record, like `entry[0].changes[1].value.statuses[2]`; empty for the
    /// record as a whole.
    pub pointer: String,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        if !self.pointer.is_empty() {
            write!(f, " at {}", self.pointer)?;
        }
        Ok(())
    }
}

/// Input that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub position: Position,
    /// The offending field (`ts`, `entry[0].changes[0].value.messages[1].timestamp`), or
    /// empty when the record as a whole is wrong (not JSON, not UTF-8, too long).
    pub field: String,
    /// A stable, short reason class for counting (`invalid_json`, `missing_field`, …).
    pub code: &'static str,
    /// What is wrong, for people.
    pub reason: String,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.position)?;
        if !self.field.is_empty() {
            write!(f, ", field `{}`", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Reason classes of rejects (the `code` of a [`Reject`]).
pub mod codes {
    pub const NOT_UTF8: &str = "not_utf8";
    pub const INVALID_JSON: &str = "invalid_json";
    pub const NOT_AN_OBJECT: &str = "not_an_object";
    pub const TOO_LONG: &str = "too_long";
    pub const MISSING_FIELD: &str = "missing_field";
    pub const WRONG_TYPE: &str = "wrong_type";
    pub const INVALID_VALUE: &str = "invalid_value";
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    pub const BAD_TIMESTAMP: &str = "bad_timestamp";
    pub const WRONG_SOURCE: &str = "wrong_source";
    pub const TRUNCATED: &str = "truncated";
}

/// What decoding a record produced besides events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub events: u64,
    pub rejects: Vec<Reject>,
    /// Valid input that carries nothing we store, counted by reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

impl Report {
    pub fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    pub fn reject(
        &mut self,
        record: u64,
        pointer: impl Into<String>,
        field: impl Into<String>,
        code: &'static str,
        reason: impl Into<String>,
    ) {
        self.rejects.push(Reject {
            position: Position {
                record,
                pointer: pointer.into(),
            },
            field: field.into(),
            code,
            reason: reason.into(),
        });
    }

    pub fn merge(&mut self, other: Report) {
        self.events += other.events;
        self.rejects.extend(other.rejects);
        for (k, v) in other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
    }
}

/// Counts the events a decoder pushes, on the way to the real sink.
pub(crate) struct Counting<'s> {
    pub sink: &'s mut dyn EventSink,
    pub count: u64,
}

impl EventSink for Counting<'_> {
    fn push(&mut self, event: &crate::event::EventRef<'_>) {
        self.count += 1;
        self.sink.push(event);
    }
}

/// Decodes one record of the given format. `record` is the 1-based record number used in
/// positions.
pub fn decode_record(
    format: SourceFormat,
    bytes: &[u8],
    record: u64,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            report.reject(
                record,
                "",
                "",
                codes::NOT_UTF8,
                format!(
                    "not valid UTF-8: invalid byte at offset {}",
                    e.valid_up_to()
                ),
            );
            return;
        }
    };
    // Serde would read an array as a struct's fields in order; only objects are records.
    if !text.trim_start().starts_with('{') {
        match serde_json::from_str::<&serde_json::value::RawValue>(text) {
            Ok(v) => report.reject(
                record,
                "",
                "",
                codes::NOT_AN_OBJECT,
                format!("expected a JSON object, found {}", json::describe(v)),
            ),
            Err(e) => agent_log::reject_unparsable(text, &e, record, report),
        }
        return;
    }
    let mut counting = Counting { sink, count: 0 };
    match format {
        SourceFormat::WhatsApp => {
            whatsapp::decode(text, record, pseudonymizer, &mut counting, report)
        }
        SourceFormat::Chatwoot => {
            chatwoot::decode(text, record, pseudonymizer, &mut counting, report)
        }
        SourceFormat::AgentLog => {
            agent_log::decode(text, record, pseudonymizer, &mut counting, report)
        }
    }
    report.events += counting.count;
}

/// The result of decoding a whole input in memory (tests and small tools; the ingest
/// pipeline streams instead).
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub report: Report,
}

/// A pretty-printed JSON document rather than JSON Lines: it opens with `[`, or its first
/// line is a lone `{`.
pub fn looks_like_document(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    if rest.first() == Some(&b'[') {
        return true;
    }
    let first_line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    first_line.trim_ascii() == b"{"
}

/// Re-cuts a whole JSON document as JSON Lines: an array gives one line per element,
/// anything else one line. JSON strings cannot hold raw newlines, so replacing the layout's
/// line breaks with spaces changes nothing inside them; a broken document stays one line for
/// the decoder to reject.
pub fn document_lines(doc: &[u8]) -> Vec<u8> {
    let flat = |b: &[u8], out: &mut Vec<u8>| {
        out.extend(
            b.iter()
                .map(|&c| if c == b'\n' || c == b'\r' { b' ' } else { c }),
        );
        out.push(b'\n');
    };
    let elements: Option<Vec<&serde_json::value::RawValue>> = std::str::from_utf8(doc)
        .ok()
        .filter(|t| t.trim_start().starts_with('['))
        .and_then(|t| serde_json::from_str(t).ok());
    let mut out = Vec::with_capacity(doc.len() + 16);
    match elements {
        Some(items) => {
            for item in items {
                flat(item.get().as_bytes(), &mut out);
            }
        }
        None => flat(doc.trim_ascii(), &mut out),
    }
    out
}

/// Decodes a whole input held in memory: JSON Lines, or one pretty-printed document.
pub fn decode_input(
    format: SourceFormat,
    input: &[u8],
    pseudonymizer: &mut Pseudonymizer,
    received_at: DateTime<Utc>,
) -> Decoded {
    if looks_like_document(input) {
        decode_lines(format, &document_lines(input), pseudonymizer, received_at)
    } else {
        decode_lines(format, input, pseudonymizer, received_at)
    }
}

/// Decodes a JSON Lines input (one record per non-blank line) into owned events.
pub fn decode_lines(
    format: SourceFormat,
    input: &[u8],
    pseudonymizer: &mut Pseudonymizer,
    received_at: DateTime<Utc>,
) -> Decoded {
    let mut sink = VecSink::new(received_at);
    let mut report = Report::default();
    for (i, line) in input.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        decode_record(
            format,
            line,
            i as u64 + 1,
            pseudonymizer,
            &mut sink,
            &mut report,
        );
    }
    Decoded {
        events: sink.events,
        report,
    }
}
