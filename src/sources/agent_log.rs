//! The agent event log: supportlake's own JSON Lines format, one event per line.
//! The format is defined in `docs/agent-log.md`; this decoder is its reference.

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::json::{self, FieldError, opt_bool, opt_i64, opt_id, opt_str, req_str};
use super::{Report, codes, time};
use crate::event::{Author, EventRef, EventSink, Kind, Source};
use crate::pseudonym::Pseudonymizer;

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts: Option<&'a RawValue>,
    #[serde(rename = "type", borrow, default)]
    type_: Option<&'a RawValue>,
    #[serde(borrow, default)]
    conversation_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    customer: Option<&'a RawValue>,
    #[serde(borrow, default)]
    agent_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    team: Option<&'a RawValue>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    inbox: Option<&'a RawValue>,
    #[serde(borrow, default)]
    priority: Option<&'a RawValue>,
    #[serde(borrow, default)]
    author: Option<&'a RawValue>,
    #[serde(borrow, default)]
    private: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    score: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reason: Option<&'a RawValue>,
    #[serde(borrow, default)]
    attrs: Option<&'a RawValue>,
}

/// The `type` values of the format and the kind each is stored as.
pub const TYPES: [(&str, Kind); 10] = [
    ("conversation.opened", Kind::ConversationOpened),
    ("conversation.queued", Kind::ConversationQueued),
    ("conversation.assigned", Kind::ConversationAssigned),
    ("conversation.transferred", Kind::ConversationTransferred),
    ("conversation.resolved", Kind::ConversationResolved),
    ("conversation.reopened", Kind::ConversationReopened),
    ("message.sent", Kind::MessageOut),
    ("message.received", Kind::MessageIn),
    ("csat.submitted", Kind::CsatSubmitted),
    ("agent.status", Kind::AgentStatus),
];

/// Agent statuses the format knows.
pub const AGENT_STATUSES: [&str; 3] = ["available", "paused", "offline"];

/// Reports a JSON syntax error of a whole record the same way for every source.
pub(crate) fn reject_unparsable(
    text: &str,
    err: &serde_json::Error,
    record: u64,
    report: &mut Report,
) {
    let trimmed = text.trim_start();
    let (code, reason) =
        if !trimmed.starts_with('{') && serde_json::from_str::<&RawValue>(text).is_ok() {
            (codes::NOT_AN_OBJECT, "expected a JSON object".to_owned())
        } else if err.is_eof() {
            (
                codes::TRUNCATED,
                format!("the JSON ends early (truncated record?): {err}"),
            )
        } else if err.is_syntax() {
            (codes::INVALID_JSON, format!("invalid JSON: {err}"))
        } else {
            // A data error on the top-level shape (e.g. a duplicate key).
            (codes::INVALID_JSON, format!("invalid record: {err}"))
        };
    report.reject(record, "", "", code, reason);
}

struct Fail {
    field: &'static str,
    err: FieldError,
}

fn at(field: &'static str) -> impl FnOnce(FieldError) -> Fail {
    move |err| Fail { field, err }
}

/// Decodes one line.
pub fn decode(
    text: &str,
    record: u64,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) {
    let line: Line<'_> = match serde_json::from_str(text) {
        Ok(l) => l,
        Err(e) => return reject_unparsable(text, &e, record, report),
    };
    if let Err(Fail { field, err }) = decode_line(&line, pseudonymizer, sink) {
        report.reject(record, "", field, err.code, err.reason);
    }
}

fn decode_line(
    line: &Line<'_>,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
) -> Result<(), Fail> {
    let type_name = req_str(line.type_).map_err(at("type"))?;
    let kind = TYPES
        .iter()
        .find(|(name, _)| *name == type_name)
        .map(|(_, k)| *k)
        .ok_or_else(|| Fail {
            field: "type",
            err: FieldError {
                code: codes::UNKNOWN_TYPE,
                reason: format!(
                    "unknown type {:?}; expected one of {}",
                    type_name.chars().take(40).collect::<String>(),
                    TYPES.map(|(n, _)| n).join(", ")
                ),
            },
        })?;
    let ts_text = req_str(line.ts).map_err(at("ts"))?;
    let ts = time::parse_rfc3339(&ts_text).map_err(|reason| Fail {
        field: "ts",
        err: FieldError {
            code: codes::BAD_TIMESTAMP,
            reason,
        },
    })?;

    let id = opt_id(line.id).map_err(at("id"))?;
    let conversation_id = opt_id(line.conversation_id).map_err(at("conversation_id"))?;
    let customer = opt_str(line.customer).map_err(at("customer"))?;
    let agent_id = opt_id(line.agent_id).map_err(at("agent_id"))?;
    let team = opt_str(line.team).map_err(at("team"))?;
    let channel = opt_str(line.channel).map_err(at("channel"))?;
    let inbox = opt_id(line.inbox).map_err(at("inbox"))?;
    let priority = opt_str(line.priority).map_err(at("priority"))?;
    let message_id = opt_id(line.message_id).map_err(at("message_id"))?;
    let reason = opt_str(line.reason).map_err(at("reason"))?;
    let private = opt_bool(line.private)
        .map_err(at("private"))?
        .unwrap_or(false);

    let needs_conversation =
        !matches!(kind, Kind::MessageIn | Kind::MessageOut | Kind::AgentStatus);
    if needs_conversation && conversation_id.is_none() {
        return Err(Fail {
            field: "conversation_id",
            err: FieldError {
                code: codes::MISSING_FIELD,
                reason: format!("`{type_name}` needs a conversation_id"),
            },
        });
    }

    let author = match kind {
        Kind::MessageIn => Some(Author::Customer),
        Kind::MessageOut => match opt_str(line.author).map_err(at("author"))?.as_deref() {
            None | Some("agent") => Some(Author::Agent),
            Some("bot") => Some(Author::Bot),
            Some(other) => {
                return Err(Fail {
                    field: "author",
                    err: FieldError::invalid(format!(
                        "author {:?} is not `agent` or `bot`",
                        other.chars().take(40).collect::<String>()
                    )),
                });
            }
        },
        _ => None,
    };

    let csat_score = if kind == Kind::CsatSubmitted {
        let score = opt_i64(line.score).map_err(at("score"))?.ok_or(Fail {
            field: "score",
            err: FieldError::missing(),
        })?;
        if !(1..=5).contains(&score) {
            return Err(Fail {
                field: "score",
                err: FieldError::invalid(format!("score {score} is not within 1–5")),
            });
        }
        Some(score as i8)
    } else {
        None
    };

    let status = if kind == Kind::AgentStatus {
        if agent_id.is_none() {
            return Err(Fail {
                field: "agent_id",
                err: FieldError {
                    code: codes::MISSING_FIELD,
                    reason: "`agent.status` needs an agent_id".into(),
                },
            });
        }
        let s = req_str(line.status).map_err(at("status"))?;
        if !AGENT_STATUSES.contains(&s.as_ref()) {
            return Err(Fail {
                field: "status",
                err: FieldError::invalid(format!(
                    "agent status {:?} is not one of {}",
                    s.chars().take(40).collect::<String>(),
                    AGENT_STATUSES.join(", ")
                )),
            });
        }
        Some(s)
    } else {
        None
    };

    let mut attrs_value = match line.attrs {
        Some(raw) => json::clean_attrs(raw).map_err(at("attrs"))?,
        None => None,
    };
    if private && kind == Kind::MessageOut {
        attrs_value = Some(with_private(attrs_value.as_deref()));
    }

    let customer_key = match customer.as_deref() {
        Some(raw) => pseudonymizer.customer_key(raw),
        None => None,
    };

    let mut event = EventRef::new("", ts, Source::AgentLog, kind);
    event.conversation_id = conversation_id.as_deref();
    event.customer_key = customer_key;
    event.agent_id = agent_id.as_deref();
    event.team = team.as_deref();
    event.channel = channel.as_deref();
    event.inbox = inbox.as_deref();
    event.priority = priority.as_deref();
    event.author = author;
    event.message_id = message_id.as_deref();
    event.status = status.as_deref();
    event.reason = reason.as_deref();
    event.csat_score = csat_score;
    event.attrs = attrs_value.as_deref();

    let hashed;
    // A blank id is no id: the content hash stands in (an empty key would make every such
    // event a duplicate of the first).
    event.event_id = match id.as_deref().filter(|i| !i.trim().is_empty()) {
        Some(id) => id,
        None => {
            hashed = content_id(&event);
            &hashed
        }
    };
    sink.push(&event);
    Ok(())
}

/// Adds `"private":true` to an attrs object (keeping keys sorted).
fn with_private(attrs: Option<&str>) -> String {
    let mut map: std::collections::BTreeMap<String, serde_json::Value> = attrs
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    map.insert("private".into(), serde_json::Value::Bool(true));
    serde_json::to_string(&map).unwrap_or_else(|_| r#"{"private":true}"#.to_owned())
}

/// The id of an event that came without one: a hash of its decoded content, so the same
/// fact sent twice (even with keys reordered or spaces changed) is stored once.
pub(crate) fn content_id(e: &EventRef<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |v: Option<&str>| {
        h.update(v.unwrap_or("\u{0}").as_bytes());
        h.update([0x1f]);
    };
    field(Some(e.source.as_str()));
    field(Some(e.kind.as_str()));
    field(Some(&e.ts.to_string()));
    field(e.conversation_id);
    field(e.customer_key);
    field(e.agent_id);
    field(e.team);
    field(e.channel);
    field(e.inbox);
    field(e.priority);
    field(e.author.map(Author::as_str));
    field(e.message_id);
    field(e.status);
    field(e.reason);
    field(e.csat_score.map(|s| s.to_string()).as_deref());
    field(e.attrs);
    let digest = h.finalize();
    format!("sha256:{}", hex::encode(&digest[..16]))
}
