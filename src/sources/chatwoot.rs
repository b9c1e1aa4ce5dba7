//! Chatwoot webhook bodies.
//!
//! | Chatwoot event | stored as |
//! |---|---|
//! | `conversation_created` | `conversation_opened` (+ `conversation_assigned` if it already has an assignee) |
//! | `conversation_status_changed` pending → open | `conversation_queued` (the bot handed over to humans) |
//! | `conversation_status_changed` resolved → open | `conversation_reopened` |
//! | `conversation_status_changed` → resolved | `conversation_resolved` |
//! | `conversation_updated`, assignee set | `conversation_assigned` |
//! | `conversation_updated`, assignee or team changed | `conversation_transferred` |
//! | `message_created` incoming | `message_in` |
//! | `message_created` outgoing | `message_out` by `agent` (a user), `bot` (an agent bot) or `system` (automation); private notes keep `"private":true` in `attrs` |
//! | `message_created` with `content_attributes.is_reaction` | `message_status` `reacted` of the message reacted to (never a message) |
//! | `message_updated` with `content_attributes.deleted` | `message_status` `deleted` of that message |
//! | `message_updated` with a CSAT rating | `csat_submitted` |
//!
//! Anything else (activity messages, snoozes, contact events, typing) is skipped and counted.
//!
//! Names: conversation ids are `chatwoot:<inbox_id>:<display_id>` (display ids are per
//! account; inbox ids are global, so the pair is unique), agent ids are
//! `chatwoot:<user_id>`, the inbox is the `inbox_id`. The customer is the contact's phone
//! number when it has one, else its `identifier`, else `chatwoot-contact:<id>`. Bodies of
//! older versions lack `conversation.meta` (and may name the conversation `display_id`, the
//! inbox only in the top-level `inbox`): the customer is then the top-level `contact`, or the
//! top-level `sender` when it is a contact.
//!
//! Ids make redeliveries duplicates without the `X-Chatwoot-Delivery` header: messages by
//! message id, state changes by conversation + change + time.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::agent_log::reject_unparsable;
use super::json::{self, FieldError, array, opt_bool, opt_id, opt_number, opt_str, req_str};
use super::{Report, codes, time};
use crate::event::{Author, EventRef, EventSink, Kind, Source};
use crate::pseudonym::Pseudonymizer;

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    updated_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    changed_attributes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content_attributes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    private: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sender: Option<&'a RawValue>,
    #[serde(borrow, default)]
    contact: Option<&'a RawValue>,
    #[serde(borrow, default)]
    inbox: Option<&'a RawValue>,
    #[serde(borrow, default)]
    conversation: Option<&'a RawValue>,
}

/// The conversation object (the body of conversation events, `conversation` in messages).
#[derive(Deserialize)]
struct Conversation<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    display_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    inbox_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    priority: Option<&'a RawValue>,
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    updated_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    sender: Option<&'a RawValue>,
    #[serde(borrow, default)]
    assignee: Option<&'a RawValue>,
    #[serde(borrow, default)]
    team: Option<&'a RawValue>,
}

/// A contact, user, agent bot or team: the fields we read of any of them.
#[derive(Deserialize, Clone)]
struct Party<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(rename = "type", borrow, default)]
    type_: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    phone_number: Option<&'a RawValue>,
    #[serde(borrow, default)]
    identifier: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(borrow, default)]
    previous_value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    current_value: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ContentAttributes<'a> {
    #[serde(borrow, default)]
    submitted_values: Option<&'a RawValue>,
    /// A WhatsApp (or other channel) reaction stored as a message.
    #[serde(borrow, default)]
    is_reaction: Option<&'a RawValue>,
    /// Set by `message_updated` when an agent deleted the message.
    #[serde(borrow, default)]
    deleted: Option<&'a RawValue>,
    /// The message a reply or reaction refers to: Chatwoot's id, and the channel's.
    #[serde(borrow, default)]
    in_reply_to: Option<&'a RawValue>,
    #[serde(borrow, default)]
    in_reply_to_external_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SubmittedValues<'a> {
    #[serde(borrow, default)]
    csat_survey_response: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CsatResponse<'a> {
    #[serde(borrow, default)]
    rating: Option<&'a RawValue>,
}

struct Fail {
    field: String,
    err: FieldError,
}

impl Clone for Fail {
    fn clone(&self) -> Self {
        Fail {
            field: self.field.clone(),
            err: FieldError {
                code: self.err.code,
                reason: self.err.reason.clone(),
            },
        }
    }
}

fn at(field: &str) -> impl FnOnce(FieldError) -> Fail + '_ {
    move |err| Fail {
        field: field.to_owned(),
        err,
    }
}

/// A conversation object's fields, parsed by either path.
#[derive(Clone, Default)]
struct ConvParts<'a> {
    id: Option<&'a RawValue>,
    display_id: Option<&'a RawValue>,
    inbox_id: Option<&'a RawValue>,
    channel: Option<&'a RawValue>,
    status: Option<&'a RawValue>,
    priority: Option<&'a RawValue>,
    created_at: Option<&'a RawValue>,
    updated_at: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    sender: Option<Party<'a>>,
    assignee: Option<Party<'a>>,
    team: Option<Party<'a>>,
}

/// The fast path: the whole body in one typed pass. A shape error fails it as a whole, and
/// the exact path decodes the body again, level by level, to name the error.
#[derive(Deserialize)]
struct FastMeta<'a> {
    #[serde(borrow, default)]
    sender: Option<Party<'a>>,
    #[serde(borrow, default)]
    assignee: Option<Party<'a>>,
    #[serde(borrow, default)]
    team: Option<Party<'a>>,
}

#[derive(Deserialize)]
struct FastConversation<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    display_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    inbox_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    priority: Option<&'a RawValue>,
    #[serde(borrow, default)]
    meta: Option<FastMeta<'a>>,
    #[serde(borrow, default)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    updated_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
}

impl<'a> FastConversation<'a> {
    fn parts(self) -> ConvParts<'a> {
        let meta = self.meta.unwrap_or(FastMeta {
            sender: None,
            assignee: None,
            team: None,
        });
        ConvParts {
            id: self.id,
            display_id: self.display_id,
            inbox_id: self.inbox_id,
            channel: self.channel,
            status: self.status,
            priority: self.priority,
            created_at: self.created_at,
            updated_at: self.updated_at,
            timestamp: self.timestamp,
            sender: meta.sender,
            assignee: meta.assignee,
            team: meta.team,
        }
    }
}

#[derive(Deserialize)]
struct FastBody<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    updated_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    changed_attributes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content_attributes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    private: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sender: Option<Party<'a>>,
    #[serde(borrow, default)]
    contact: Option<Party<'a>>,
    #[serde(borrow, default)]
    inbox: Option<Party<'a>>,
    #[serde(borrow, default)]
    conversation: Option<FastConversation<'a>>,
    // The body's own conversation fields (conversation events).
    #[serde(borrow, default)]
    display_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    inbox_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    priority: Option<&'a RawValue>,
    #[serde(borrow, default)]
    meta: Option<FastMeta<'a>>,
}

/// Where the nested objects of a body come from: the fast parse, or parsed now from raw.
// Lives on the stack for one record; boxing the large variant would allocate per record.
#[allow(clippy::large_enum_variant)]
enum Nested<'a> {
    Fast {
        sender: Option<Party<'a>>,
        contact: Option<Party<'a>>,
        inbox: Option<Party<'a>>,
        this: ConvParts<'a>,
        conversation: Option<ConvParts<'a>>,
    },
    Exact {
        whole: &'a RawValue,
    },
}

impl<'a> Nested<'a> {
    /// The body itself, read as a conversation (conversation events).
    fn this(&self) -> Result<ConvParts<'a>, Fail> {
        match self {
            Nested::Fast { this, .. } => Ok(this.clone()),
            Nested::Exact { whole } => parts_exact(whole, ""),
        }
    }

    /// The body's `conversation` (message events).
    fn conversation(&self, body: &Body<'a>) -> Result<ConvParts<'a>, Fail> {
        let missing = || Fail {
            field: "conversation".into(),
            err: FieldError::missing(),
        };
        match self {
            Nested::Fast { conversation, .. } => conversation.clone().ok_or_else(missing),
            Nested::Exact { .. } => match body.conversation.filter(|r| r.get() != "null") {
                Some(raw) => parts_exact(raw, "conversation"),
                None => Err(missing()),
            },
        }
    }

    fn sender(&self, body: &Body<'a>) -> Result<Option<Party<'a>>, Fail> {
        match self {
            Nested::Fast { sender, .. } => Ok(sender.clone()),
            Nested::Exact { .. } => party(body.sender, "sender"),
        }
    }

    /// The top-level `contact` of older message bodies.
    fn contact(&self, body: &Body<'a>) -> Result<Option<Party<'a>>, Fail> {
        match self {
            Nested::Fast { contact, .. } => Ok(contact.clone()),
            Nested::Exact { .. } => party(body.contact, "contact"),
        }
    }

    /// The top-level `inbox` of message bodies.
    fn inbox(&self, body: &Body<'a>) -> Result<Option<Party<'a>>, Fail> {
        match self {
            Nested::Fast { inbox, .. } => Ok(inbox.clone()),
            Nested::Exact { .. } => party(body.inbox, "inbox"),
        }
    }
}

/// Reads a conversation object level by level, naming the first field that is wrong.
fn parts_exact<'a>(raw: &'a RawValue, prefix: &str) -> Result<ConvParts<'a>, Fail> {
    let name = |f: &str| {
        if prefix.is_empty() {
            f.to_owned()
        } else {
            format!("{prefix}.{f}")
        }
    };
    let c: Conversation<'_> = json::object(raw).map_err(|err| Fail {
        field: prefix.to_owned(),
        err,
    })?;
    let mut parts = ConvParts {
        id: c.id,
        display_id: c.display_id,
        inbox_id: c.inbox_id,
        channel: c.channel,
        status: c.status,
        priority: c.priority,
        created_at: c.created_at,
        updated_at: c.updated_at,
        timestamp: c.timestamp,
        ..ConvParts::default()
    };
    if let Some(meta) = c.meta.filter(|m| m.get() != "null") {
        let meta: Meta<'_> = json::object(meta).map_err(|err| Fail {
            field: name("meta"),
            err,
        })?;
        parts.sender = party(meta.sender, &name("meta.sender"))?;
        parts.assignee = party(meta.assignee, &name("meta.assignee"))?;
        parts.team = party(meta.team, &name("meta.team"))?;
    }
    Ok(parts)
}

/// What every event of one conversation carries.
struct ConvFacts<'a> {
    conversation_id: String,
    inbox: Cow<'a, str>,
    channel: Option<String>,
    priority: Option<Cow<'a, str>>,
    team: Option<Cow<'a, str>>,
    agent_id: Option<String>,
    customer_key: Option<String>,
    status: Option<Cow<'a, str>>,
    created_at: Option<&'a RawValue>,
    updated_at: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
}

/// Decodes one webhook body.
pub fn decode(
    text: &str,
    record: u64,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) {
    decode_with(text, record, false, pseudonymizer, sink, report);
}

/// `exact_only` skips the fast path (tests check that both paths agree).
fn decode_with(
    text: &str,
    record: u64,
    exact_only: bool,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) {
    let fast = if exact_only {
        None
    } else {
        serde_json::from_str::<FastBody<'_>>(text).ok()
    };
    let (body, nested) = match fast {
        Some(f) => {
            let this = ConvParts {
                id: f.id,
                display_id: f.display_id,
                inbox_id: f.inbox_id,
                channel: f.channel,
                status: f.status,
                priority: f.priority,
                created_at: f.created_at,
                updated_at: f.updated_at,
                timestamp: f.timestamp,
                ..ConvParts::default()
            };
            let this = match f.meta {
                Some(m) => ConvParts {
                    sender: m.sender,
                    assignee: m.assignee,
                    team: m.team,
                    ..this
                },
                None => this,
            };
            let body = Body {
                event: f.event,
                id: f.id,
                created_at: f.created_at,
                updated_at: f.updated_at,
                timestamp: f.timestamp,
                changed_attributes: f.changed_attributes,
                message_type: f.message_type,
                content_type: f.content_type,
                content_attributes: f.content_attributes,
                private: f.private,
                source_id: f.source_id,
                sender: None,
                contact: None,
                inbox: None,
                conversation: None,
            };
            let nested = Nested::Fast {
                sender: f.sender,
                contact: f.contact,
                inbox: f.inbox,
                this,
                conversation: f.conversation.map(FastConversation::parts),
            };
            (body, nested)
        }
        None => {
            let body: Body<'_> = match serde_json::from_str(text) {
                Ok(b) => b,
                Err(e) => return reject_unparsable(text, &e, record, report),
            };
            let whole = match serde_json::from_str::<&RawValue>(text) {
                Ok(w) => w,
                Err(e) => return reject_unparsable(text, &e, record, report),
            };
            (body, Nested::Exact { whole })
        }
    };
    if let Err(Fail { field, err }) = decode_body(&body, &nested, pseudonymizer, sink, report) {
        report.reject(record, "", field, err.code, err.reason);
    }
}

fn decode_body<'a>(
    body: &Body<'a>,
    nested: &Nested<'a>,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Fail> {
    let event = req_str(body.event).map_err(at("event"))?;
    match event.as_ref() {
        "conversation_created" => {
            let conv = facts(&nested.this()?, "", None, pseudonymizer)?;
            let ts = instant(&[("created_at", conv.created_at)])?;
            let id = format!("{}:created", conv.conversation_id);
            emit(sink, &conv, &id, ts, Kind::ConversationOpened, |_| {});
            if conv.agent_id.is_some() {
                let id = format!("{}:created:assigned", conv.conversation_id);
                emit(sink, &conv, &id, ts, Kind::ConversationAssigned, |_| {});
            }
            Ok(())
        }
        "conversation_status_changed" => {
            let conv = facts(&nested.this()?, "", None, pseudonymizer)?;
            let changes = changed(body.changed_attributes)?;
            let ts = change_time(&changes, body, &conv)?;
            let (previous, current) = match find(&changes, "status") {
                Some(c) => (
                    opt_str(c.previous_value)
                        .map_err(at("changed_attributes.status.previous_value"))?,
                    opt_str(c.current_value)
                        .map_err(at("changed_attributes.status.current_value"))?,
                ),
                None => (None, conv.status.clone()),
            };
            let current = current.ok_or_else(|| Fail {
                field: "status".into(),
                err: FieldError::missing(),
            })?;
            let kind = match (previous.as_deref(), current.as_ref()) {
                (_, "resolved") => Kind::ConversationResolved,
                (Some("resolved"), "open") => Kind::ConversationReopened,
                (Some("snoozed"), "open") => {
                    report.skip("chatwoot_unsnoozed");
                    return Ok(());
                }
                // pending → open is the bot's handover; without the previous status (older
                // Chatwoot) an opening is taken as entering the human queue too.
                (_, "open") => Kind::ConversationQueued,
                (_, "snoozed") => {
                    report.skip("chatwoot_snoozed");
                    return Ok(());
                }
                (_, "pending") => {
                    report.skip("chatwoot_back_to_bot");
                    return Ok(());
                }
                (_, other) => {
                    return Err(Fail {
                        field: "status".into(),
                        err: FieldError::invalid(format!(
                            "unknown conversation status {:?} (open, pending, snoozed, resolved)",
                            other.chars().take(40).collect::<String>()
                        )),
                    });
                }
            };
            let id = format!("{}:status:{current}:{ts}", conv.conversation_id);
            emit(sink, &conv, &id, ts, kind, |_| {});
            Ok(())
        }
        "conversation_updated" => {
            let conv = facts(&nested.this()?, "", None, pseudonymizer)?;
            let changes = changed(body.changed_attributes)?;
            let ts = change_time(&changes, body, &conv)?;
            let assignee = find(&changes, "assignee_id")
                .map(|c| {
                    Ok::<_, Fail>((
                        opt_id(c.previous_value)
                            .map_err(at("changed_attributes.assignee_id.previous_value"))?,
                        opt_id(c.current_value)
                            .map_err(at("changed_attributes.assignee_id.current_value"))?,
                    ))
                })
                .transpose()?;
            let team = find(&changes, "team_id")
                .map(|c| {
                    Ok::<_, Fail>((
                        opt_id(c.previous_value)
                            .map_err(at("changed_attributes.team_id.previous_value"))?,
                        opt_id(c.current_value)
                            .map_err(at("changed_attributes.team_id.current_value"))?,
                    ))
                })
                .transpose()?;
            let kind = match (&assignee, &team) {
                (Some((None, Some(_))), _) => Kind::ConversationAssigned,
                (Some((Some(_), Some(_))), _) => Kind::ConversationTransferred,
                (_, Some((Some(_), Some(_)))) => Kind::ConversationTransferred,
                (Some((_, None)), _) => {
                    report.skip("chatwoot_unassigned");
                    return Ok(());
                }
                _ => {
                    report.skip("chatwoot_other_update");
                    return Ok(());
                }
            };
            let id = format!("{}:updated:{}:{ts}", conv.conversation_id, kind.as_str());
            emit(sink, &conv, &id, ts, kind, |_| {});
            Ok(())
        }
        "message_created" => message_created(body, nested, pseudonymizer, sink, report),
        "message_updated" => message_updated(body, nested, pseudonymizer, sink, report),
        _ => {
            report.skip("chatwoot_other_event");
            Ok(())
        }
    }
}

fn emit<'e>(
    sink: &mut dyn EventSink,
    conv: &'e ConvFacts<'_>,
    id: &'e str,
    ts: i64,
    kind: Kind,
    tweak: impl FnOnce(&mut EventRef<'e>),
) {
    let mut e = EventRef::new(id, ts, Source::Chatwoot, kind);
    e.conversation_id = Some(&conv.conversation_id);
    e.inbox = Some(&conv.inbox);
    e.channel = conv.channel.as_deref();
    e.priority = conv.priority.as_deref();
    e.team = conv.team.as_deref();
    e.agent_id = conv.agent_id.as_deref();
    e.customer_key = conv.customer_key.as_deref();
    tweak(&mut e);
    sink.push(&e);
}

/// A conversation's facts. `fallback_inbox` is the inbox named outside the conversation
/// object (message bodies carry a top-level `inbox`), for conversations that lack `inbox_id`.
fn facts<'a>(
    c: &ConvParts<'a>,
    prefix: &str,
    fallback_inbox: Option<Cow<'a, str>>,
    pseudonymizer: &mut Pseudonymizer,
) -> Result<ConvFacts<'a>, Fail> {
    let name = |f: &str| {
        if prefix.is_empty() {
            f.to_owned()
        } else {
            format!("{prefix}.{f}")
        }
    };
    let fail = |f: &str| {
        let field = name(f);
        move |err| Fail { field, err }
    };
    // Chatwoot's `id` here is the display id; bodies of older versions name it `display_id`.
    let display_id = match opt_id(c.id).map_err(fail("id"))? {
        Some(id) => id,
        None => opt_id(c.display_id)
            .map_err(fail("display_id"))?
            .ok_or_else(|| Fail {
                field: name("id"),
                err: FieldError::missing(),
            })?,
    };
    let inbox = match opt_id(c.inbox_id).map_err(fail("inbox_id"))? {
        Some(inbox) => inbox,
        None => fallback_inbox.ok_or_else(|| Fail {
            field: name("inbox_id"),
            err: FieldError {
                code: codes::MISSING_FIELD,
                reason: "required field is missing, and the body names no inbox (`inbox.id`) \
                         either: the conversation cannot be identified"
                    .to_owned(),
            },
        })?,
    };
    let channel = opt_str(c.channel)
        .map_err(fail("channel"))?
        .map(|ch| channel_name(&ch));
    let priority = opt_str(c.priority).map_err(fail("priority"))?;
    let status = opt_str(c.status).map_err(fail("status"))?;
    let mut facts = ConvFacts {
        conversation_id: format!("chatwoot:{inbox}:{display_id}"),
        inbox,
        channel,
        priority,
        team: None,
        agent_id: None,
        customer_key: None,
        status,
        created_at: c.created_at,
        updated_at: c.updated_at,
        timestamp: c.timestamp,
    };
    if let Some(team) = &c.team {
        facts.team = opt_str(team.name).map_err(fail("meta.team.name"))?;
    }
    if let Some(assignee) = &c.assignee {
        facts.agent_id = opt_id(assignee.id)
            .map_err(fail("meta.assignee.id"))?
            .map(|id| format!("chatwoot:{id}"));
    }
    if let Some(sender) = &c.sender {
        facts.customer_key = contact_key(sender, &name("meta.sender"), pseudonymizer)?;
    }
    Ok(facts)
}

fn party<'a>(raw: Option<&'a RawValue>, field: &str) -> Result<Option<Party<'a>>, Fail> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => json::object(r).map(Some).map_err(|err| Fail {
            field: field.to_owned(),
            err,
        }),
    }
}

fn contact_key(
    contact: &Party<'_>,
    field: &str,
    pseudonymizer: &mut Pseudonymizer,
) -> Result<Option<String>, Fail> {
    let f = |s: &str| format!("{field}.{s}");
    let phone = opt_str(contact.phone_number).map_err(at(&f("phone_number")))?;
    let identifier = opt_id(contact.identifier).map_err(at(&f("identifier")))?;
    let id = opt_id(contact.id).map_err(at(&f("id")))?;
    let identity = phone
        .filter(|p| !p.trim().is_empty())
        .or(identifier.filter(|i| !i.trim().is_empty()))
        .or_else(|| id.map(|id| Cow::Owned(format!("chatwoot-contact:{id}"))));
    Ok(identity
        .as_deref()
        .and_then(|i| pseudonymizer.customer_key(i))
        .map(str::to_owned))
}

/// `Channel::WebWidget` → `webchat`, `Channel::Whatsapp` → `whatsapp`, …
fn channel_name(channel: &str) -> String {
    let short = channel.strip_prefix("Channel::").unwrap_or(channel);
    match short {
        "WebWidget" => "webchat".into(),
        "Whatsapp" => "whatsapp".into(),
        "FacebookPage" => "facebook".into(),
        "TwitterProfile" => "twitter".into(),
        "TwilioSms" | "Sms" => "sms".into(),
        other => other.to_ascii_lowercase(),
    }
}

fn changed<'a>(raw: Option<&'a RawValue>) -> Result<Vec<(String, Change<'a>)>, Fail> {
    let mut out = Vec::new();
    for (i, item) in array(raw)
        .map_err(at("changed_attributes"))?
        .into_iter()
        .enumerate()
    {
        let field = format!("changed_attributes[{i}]");
        let map: std::collections::BTreeMap<String, &RawValue> =
            json::object(item).map_err(at(&field))?;
        for (name, value) in map {
            let change: Change<'_> = json::object(value).map_err(at(&format!("{field}.{name}")))?;
            out.push((name, change));
        }
    }
    Ok(out)
}

fn find<'c, 'a>(changes: &'c [(String, Change<'a>)], name: &str) -> Option<&'c Change<'a>> {
    changes.iter().find(|(n, _)| n == name).map(|(_, c)| c)
}

/// Reads an instant given as Unix seconds (number or digit string) or as an ISO 8601 /
/// RFC 3339 string (`2026-11-02T12:00:00.000Z`, `2026-11-02 12:00:00 UTC`), taking the first
/// of `candidates` that is present.
fn instant(candidates: &[(&str, Option<&RawValue>)]) -> Result<i64, Fail> {
    for (field, raw) in candidates {
        let Some(raw) = raw.filter(|r| r.get() != "null") else {
            continue;
        };
        let bad_ts = |reason: String| Fail {
            field: (*field).to_owned(),
            err: FieldError {
                code: codes::BAD_TIMESTAMP,
                reason,
            },
        };
        let text = raw.get();
        let is_numeric_string = text.len() > 2
            && text.starts_with('"')
            && text[1..text.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.');
        if !text.starts_with('"') || is_numeric_string {
            let secs = opt_number(Some(raw))
                .map_err(at(field))?
                .unwrap_or_default();
            return time::from_unix_seconds(secs).map_err(bad_ts);
        }
        let s = opt_str(Some(raw)).map_err(at(field))?.unwrap_or_default();
        let normalized = s
            .strip_suffix(" UTC")
            .map(|t| format!("{t}Z"))
            .unwrap_or_else(|| s.to_string());
        return time::parse_rfc3339(&normalized).map_err(bad_ts);
    }
    Err(Fail {
        field: candidates
            .first()
            .map(|(f, _)| (*f).to_owned())
            .unwrap_or_default(),
        err: FieldError {
            code: codes::MISSING_FIELD,
            reason: format!(
                "no timestamp: expected one of {}",
                candidates
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    })
}

/// When a state change happened: Chatwoot reports the new `updated_at` among the changed
/// attributes; older versions only refresh the conversation's own timestamps.
fn change_time(
    changes: &[(String, Change<'_>)],
    body: &Body<'_>,
    conv: &ConvFacts<'_>,
) -> Result<i64, Fail> {
    let from_changes = find(changes, "updated_at").and_then(|c| c.current_value);
    instant(&[
        ("changed_attributes.updated_at.current_value", from_changes),
        ("updated_at", body.updated_at.or(conv.updated_at)),
        ("timestamp", body.timestamp.or(conv.timestamp)),
    ])
}

/// The conversation of a message body. Older Chatwoot versions sent a conversation without
/// `inbox_id` and `meta` (`{"display_id": …}`): the inbox is then the top-level `inbox`, and
/// the customer the top-level `contact`, or the top-level `sender` when it is a contact.
fn message_conversation<'a>(
    body: &Body<'a>,
    nested: &Nested<'a>,
    pseudonymizer: &mut Pseudonymizer,
) -> Result<ConvFacts<'a>, Fail> {
    let parts = nested.conversation(body)?;
    let fallback_inbox = if parts.inbox_id.is_some_and(|r| r.get() != "null") {
        None
    } else {
        match nested.inbox(body)? {
            Some(inbox) => opt_id(inbox.id).map_err(at("inbox.id"))?,
            None => None,
        }
    };
    let mut conv = facts(&parts, "conversation", fallback_inbox, pseudonymizer)?;
    if parts.sender.is_none() {
        if let Some(contact) = nested.contact(body)? {
            conv.customer_key = contact_key(&contact, "contact", pseudonymizer)?;
        } else if let Some(sender) = nested.sender(body)?
            && opt_str(sender.type_).map_err(at("sender.type"))?.as_deref() == Some("contact")
        {
            conv.customer_key = contact_key(&sender, "sender", pseudonymizer)?;
        }
    }
    Ok(conv)
}

/// `content_attributes`, when it is an object (it is free-form; a shape we do not know is
/// read as empty rather than rejected).
fn content_attributes<'a>(body: &Body<'a>) -> Option<ContentAttributes<'a>> {
    body.content_attributes
        .filter(|r| r.get() != "null")
        .and_then(|r| json::object::<ContentAttributes<'_>>(r).ok())
}

fn flag(raw: Option<&RawValue>) -> bool {
    opt_bool(raw).ok().flatten() == Some(true)
}

fn message_created<'a>(
    body: &Body<'a>,
    nested: &Nested<'a>,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Fail> {
    let message_type = req_str(body.message_type).map_err(at("message_type"))?;
    let content_type = opt_str(body.content_type).map_err(at("content_type"))?;
    let private = opt_bool(body.private)
        .map_err(at("private"))?
        .unwrap_or(false);
    let sender = nested.sender(body)?;
    let sender_type = match &sender {
        Some(s) => opt_str(s.type_).map_err(at("sender.type"))?,
        None => None,
    };
    let (kind, author) = match message_type.as_ref() {
        "incoming" => (Kind::MessageIn, Author::Customer),
        "outgoing" => (
            Kind::MessageOut,
            match sender_type.as_deref() {
                Some("user") => Author::Agent,
                Some("agent_bot") => Author::Bot,
                _ => Author::System,
            },
        ),
        "template" if content_type.as_deref() == Some("input_csat") => {
            report.skip("chatwoot_csat_survey");
            return Ok(());
        }
        "template" => (Kind::MessageOut, Author::System),
        "activity" => {
            report.skip("chatwoot_activity");
            return Ok(());
        }
        other => {
            return Err(Fail {
                field: "message_type".into(),
                err: FieldError::invalid(format!(
                    "unknown message_type {:?} (incoming, outgoing, activity, template)",
                    other.chars().take(40).collect::<String>()
                )),
            });
        }
    };
    let conv = message_conversation(body, nested, pseudonymizer)?;
    let message_id = opt_id(body.id).map_err(at("id"))?.ok_or_else(|| Fail {
        field: "id".into(),
        err: FieldError::missing(),
    })?;
    let ts = instant(&[("created_at", body.created_at)])?;
    let source_id = opt_str(body.source_id).map_err(at("source_id"))?;
    // A reaction is stored as a message by Chatwoot; here it is what it is: a status of the
    // message it reacts to, never a message, a customer turn or a reply.
    let reaction_to = match content_attributes(body) {
        Some(c) if flag(c.is_reaction) => Some(
            opt_str(c.in_reply_to_external_id)
                .ok()
                .flatten()
                .filter(|s| !s.is_empty())
                .or_else(|| opt_id(c.in_reply_to).ok().flatten()),
        ),
        _ => None,
    };
    let agent_id = match (&sender, author) {
        (Some(s), Author::Agent) => opt_id(s.id)
            .map_err(at("sender.id"))?
            .map(|id| format!("chatwoot:{id}")),
        _ => None,
    };
    let mut attrs = json::Attrs::new();
    if let Some(ct) = content_type.as_deref().filter(|ct| *ct != "text") {
        attrs.str("content_type", ct);
    }
    if private {
        attrs.bool("private", true);
    }
    let attrs = attrs.finish();
    let id = format!("chatwoot:message:{message_id}");
    let message_ref = source_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(&message_id);
    let (kind, message_ref, status) = match &reaction_to {
        Some(target) => (Kind::MessageStatus, target.as_deref(), Some("reacted")),
        None => (kind, Some(message_ref), None),
    };
    emit(sink, &conv, &id, ts, kind, |e| {
        e.author = Some(author);
        if agent_id.is_some() {
            e.agent_id = agent_id.as_deref();
        }
        e.message_id = message_ref;
        e.status = status;
        e.attrs = attrs.as_deref();
    });
    Ok(())
}

fn message_updated<'a>(
    body: &Body<'a>,
    nested: &Nested<'a>,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Fail> {
    let content_type = opt_str(body.content_type).map_err(at("content_type"))?;
    if content_attributes(body).is_some_and(|c| flag(c.deleted)) {
        return message_deleted(body, nested, pseudonymizer, sink);
    }
    if content_type.as_deref() != Some("input_csat") {
        report.skip("chatwoot_message_updated");
        return Ok(());
    }
    let rating = body
        .content_attributes
        .and_then(|r| json::object::<ContentAttributes<'_>>(r).ok())
        .and_then(|c| c.submitted_values)
        .and_then(|r| json::object::<SubmittedValues<'_>>(r).ok())
        .and_then(|s| s.csat_survey_response)
        .and_then(|r| json::object::<CsatResponse<'_>>(r).ok())
        .and_then(|c| c.rating);
    let Some(rating) = rating else {
        report.skip("chatwoot_csat_unanswered");
        return Ok(());
    };
    let field = "content_attributes.submitted_values.csat_survey_response.rating";
    let score = json::opt_i64(Some(rating))
        .map_err(at(field))?
        .unwrap_or_default();
    if !(1..=5).contains(&score) {
        return Err(Fail {
            field: field.into(),
            err: FieldError::invalid(format!("rating {score} is not within 1–5")),
        });
    }
    let conv = message_conversation(body, nested, pseudonymizer)?;
    let message_id = opt_id(body.id).map_err(at("id"))?.ok_or_else(|| Fail {
        field: "id".into(),
        err: FieldError::missing(),
    })?;
    let ts = instant(&[
        ("updated_at", body.updated_at),
        ("created_at", body.created_at),
    ])?;
    let id = format!("chatwoot:csat:{message_id}");
    emit(sink, &conv, &id, ts, Kind::CsatSubmitted, |e| {
        e.csat_score = Some(score as i8);
    });
    Ok(())
}

/// `message_updated` of a message an agent deleted (`content_attributes.deleted`): a
/// `deleted` status of that message. Chatwoot's body has no deletion time: `updated_at` when
/// present, else the message's `created_at`.
fn message_deleted<'a>(
    body: &Body<'a>,
    nested: &Nested<'a>,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
) -> Result<(), Fail> {
    let message_type = opt_str(body.message_type).map_err(at("message_type"))?;
    let author = match message_type.as_deref() {
        Some("incoming") => Some(Author::Customer),
        Some("outgoing") => match nested.sender(body)? {
            Some(s) => match opt_str(s.type_).map_err(at("sender.type"))?.as_deref() {
                Some("user") => Some(Author::Agent),
                Some("agent_bot") => Some(Author::Bot),
                _ => Some(Author::System),
            },
            None => Some(Author::System),
        },
        _ => None,
    };
    let conv = message_conversation(body, nested, pseudonymizer)?;
    let message_id = opt_id(body.id).map_err(at("id"))?.ok_or_else(|| Fail {
        field: "id".into(),
        err: FieldError::missing(),
    })?;
    let ts = instant(&[
        ("updated_at", body.updated_at),
        ("created_at", body.created_at),
    ])?;
    let source_id = opt_str(body.source_id).map_err(at("source_id"))?;
    let message_ref = source_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(&message_id);
    let id = format!("chatwoot:message:{message_id}:deleted");
    emit(sink, &conv, &id, ts, Kind::MessageStatus, |e| {
        e.author = author;
        e.message_id = Some(message_ref);
        e.status = Some("deleted");
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::VecSink;
    use crate::pseudonym::PseudonymKey;

    #[test]
    fn fast_and_exact_paths_agree() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data");
        let mut lines = Vec::new();
        for f in [
            "fixtures/chatwoot/every-event.jsonl",
            "fixtures/chatwoot/older-message-bodies.jsonl",
            "simulated/chatwoot/2026-11-02.jsonl",
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            lines.extend(text.lines().map(str::to_owned));
        }
        for f in [
            "fixtures/chatwoot/older-version.json",
            "corpus/chatwoot/docs-message-created-2020.json",
        ] {
            let doc = std::fs::read(dir.join(f)).unwrap();
            let flat = String::from_utf8(crate::sources::document_lines(&doc)).unwrap();
            lines.extend(flat.lines().map(str::to_owned));
        }
        assert!(lines.len() > 100);
        let key = PseudonymKey::new(b"paths-agree-key-0123456789".to_vec()).unwrap();
        let run = |exact: bool| {
            let mut p = Pseudonymizer::new(&key);
            let mut sink = VecSink::new(chrono::DateTime::UNIX_EPOCH);
            let mut report = Report::default();
            for (i, l) in lines.iter().enumerate() {
                decode_with(l, i as u64 + 1, exact, &mut p, &mut sink, &mut report);
            }
            (sink.events, report)
        };
        let (fast, fast_report) = run(false);
        let (exact, exact_report) = run(true);
        assert_eq!(fast, exact);
        assert_eq!(fast_report, exact_report);
    }
}
