//! WhatsApp Cloud API webhook bodies.
//!
//! One body (`object: whatsapp_business_account`) holds `entry[]`, each with `changes[]`,
//! each with a `value` carrying `metadata` (the business number), `contacts[]`,
//! `messages[]` (customer → business) and `statuses[]` (what happened to a message the
//! business sent). Every message and status becomes one event:
//! - a message → `message_in`, id = its `wamid`, no conversation id (the query layer links
//!   it to the customer's open conversation);
//! - a status → `message_status`, id = `wamid:status` (Meta redelivers for days; the id
//!   makes a redelivery a duplicate);
//! - a coexistence echo (`smb_message_echoes`, sent from the WhatsApp Business app) →
//!   `message_out` by an agent;
//! - a message that changes another one — a reaction (`type: reaction`), an edit
//!   (`type: edit`) or a deletion for everyone (`type: revoke`), the customer's or an echo of
//!   the business's own — is no new message: it becomes a `message_status` of the message it
//!   changes (`message_id` = that message's `wamid`, `status` = `reacted`,
//!   `reaction_removed`, `edited` or `deleted`), id = its own `wamid`. So it never counts as
//!   a message, a customer turn or a reply.
//!
//! The customer is identified by phone (`from`, `wa_id`, `recipient_id`) when WhatsApp
//! gives one, else by the business-scoped user id (`from_user_id`, `user_id`,
//! `recipient_user_id`). An empty string counts as absent: bodies of customers known only by
//! their business-scoped id may carry `"from": ""`. Message text, captions, media, locations and profile names are read
//! past and never kept; only the message `type` goes into `attrs`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::agent_log::reject_unparsable;
use super::json::{self, FieldError, array, opt_id, opt_number, opt_str};
use super::{Report, codes, time};
use crate::event::{Author, EventRef, EventSink, Kind, Source};
use crate::pseudonym::Pseudonymizer;

/// The `object` value of WhatsApp Business webhooks.
pub const OBJECT: &str = "whatsapp_business_account";
/// The `channel` of every WhatsApp event.
pub const CHANNEL: &str = "whatsapp";

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    entry: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default)]
    changes: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(borrow, default)]
    field: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Value<'a> {
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    contacts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    statuses: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message_echoes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    errors: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    phone_number_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Contact<'a> {
    #[serde(borrow, default)]
    wa_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    from: Option<&'a RawValue>,
    #[serde(borrow, default)]
    from_user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    to: Option<&'a RawValue>,
    #[serde(borrow, default)]
    to_user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(rename = "type", borrow, default)]
    type_: Option<&'a RawValue>,
    #[serde(borrow, default)]
    interactive: Option<&'a RawValue>,
    #[serde(borrow, default)]
    referral: Option<&'a RawValue>,
    #[serde(borrow, default)]
    errors: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reaction: Option<&'a RawValue>,
    #[serde(borrow, default)]
    edit: Option<&'a RawValue>,
    #[serde(borrow, default)]
    revoke: Option<&'a RawValue>,
}

/// `reaction` of a reaction message: the message reacted to, and the emoji (absent or empty
/// when the customer takes the reaction back). The emoji itself is never kept.
#[derive(Deserialize)]
struct Reaction<'a> {
    #[serde(borrow, default)]
    message_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    emoji: Option<&'a RawValue>,
}

/// `edit` or `revoke` of a message that changes an earlier one.
#[derive(Deserialize)]
struct Changes<'a> {
    #[serde(borrow, default)]
    original_message_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Status<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    recipient_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    recipient_user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pricing: Option<&'a RawValue>,
    #[serde(borrow, default)]
    errors: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type", borrow, default)]
    type_: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Pricing<'a> {
    #[serde(borrow, default)]
    category: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorItem<'a> {
    #[serde(borrow, default)]
    code: Option<&'a RawValue>,
    #[serde(borrow, default)]
    title: Option<&'a RawValue>,
}

/// Where an item sits inside a body, turned into a pointer only when something is wrong.
#[derive(Clone, Copy)]
struct Loc {
    entry: usize,
    change: usize,
    /// `None` for the change itself; else the list name and index inside `value`.
    item: Option<(&'static str, usize)>,
}

impl Loc {
    fn pointer(self) -> String {
        let mut p = format!("entry[{}].changes[{}]", self.entry, self.change);
        if let Some((list, i)) = self.item {
            p.push_str(&format!(".value.{list}[{i}]"));
        }
        p
    }
}

/// A nested element that could not be read: where, which field, why.
struct Bad {
    pointer: String,
    field: String,
    err: FieldError,
}

fn bad(pointer: &str, field: &str, err: FieldError) -> Bad {
    Bad {
        pointer: pointer.to_owned(),
        field: field.to_owned(),
        err,
    }
}

fn bad_at(loc: Loc, field: &str, err: FieldError) -> Bad {
    bad(&loc.pointer(), field, err)
}

fn full(pointer: &str, field: &str) -> String {
    if pointer.is_empty() {
        field.to_owned()
    } else {
        format!("{pointer}.{field}")
    }
}

fn push_bad(record: u64, b: Bad, report: &mut Report) {
    let field = full(&b.pointer, &b.field);
    report.reject(record, b.pointer, field, b.err.code, b.err.reason);
}

/// The fast path: the whole body in one typed pass. Any shape error makes it fail as a
/// whole, and the body is decoded again by the exact path, which finds and names the error.
#[derive(Deserialize)]
struct FastBody<'a> {
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    entry: Vec<FastEntry<'a>>,
}

#[derive(Deserialize)]
struct FastEntry<'a> {
    #[serde(borrow, default)]
    changes: Vec<FastChange<'a>>,
}

#[derive(Deserialize)]
struct FastChange<'a> {
    #[serde(borrow, default)]
    field: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<FastValue<'a>>,
}

#[derive(Deserialize)]
struct FastValue<'a> {
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
    #[serde(borrow, default)]
    contacts: Vec<Contact<'a>>,
    #[serde(borrow, default)]
    messages: Vec<Message<'a>>,
    #[serde(borrow, default)]
    statuses: Vec<Status<'a>>,
    #[serde(borrow, default)]
    message_echoes: Vec<Message<'a>>,
    #[serde(borrow, default)]
    errors: Option<&'a RawValue>,
}

/// One change, parsed either way; items that failed to parse carry their error.
struct ParsedChange<'a> {
    field: Option<&'a RawValue>,
    value_present: bool,
    metadata: Option<Metadata<'a>>,
    contacts: Vec<Contact<'a>>,
    messages: Vec<Result<Message<'a>, FieldError>>,
    statuses: Vec<Result<Status<'a>, FieldError>>,
    echoes: Vec<Result<Message<'a>, FieldError>>,
    value_errors: bool,
}

impl<'a> From<FastChange<'a>> for ParsedChange<'a> {
    fn from(c: FastChange<'a>) -> Self {
        let value_present = c.value.is_some();
        let v = c.value.unwrap_or(FastValue {
            metadata: None,
            contacts: Vec::new(),
            messages: Vec::new(),
            statuses: Vec::new(),
            message_echoes: Vec::new(),
            errors: None,
        });
        ParsedChange {
            field: c.field,
            value_present,
            metadata: v.metadata,
            contacts: v.contacts,
            messages: v.messages.into_iter().map(Ok).collect(),
            statuses: v.statuses.into_iter().map(Ok).collect(),
            echoes: v.message_echoes.into_iter().map(Ok).collect(),
            value_errors: v.errors.is_some(),
        }
    }
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
    if let Some(body) = fast {
        if let Err(b) = check_object(body.object) {
            return push_bad(record, b, report);
        }
        if body.entry.is_empty() {
            report.skip("whatsapp_empty_body");
        }
        for (ei, entry) in body.entry.into_iter().enumerate() {
            for (ci, change) in entry.changes.into_iter().enumerate() {
                let loc = Loc {
                    entry: ei,
                    change: ci,
                    item: None,
                };
                if let Err(b) =
                    decode_change(change.into(), loc, record, pseudonymizer, sink, report)
                {
                    push_bad(record, b, report);
                }
            }
        }
        return;
    }
    decode_exact(text, record, pseudonymizer, sink, report);
}

fn check_object(object: Option<&RawValue>) -> Result<(), Bad> {
    match opt_str(object) {
        Ok(Some(o)) if o == OBJECT => Ok(()),
        Ok(other) => {
            let found = other.map_or("nothing".to_owned(), |o| format!("{o:?}"));
            Err(bad(
                "",
                "object",
                FieldError {
                    code: codes::WRONG_SOURCE,
                    reason: format!(
                        "expected \"{OBJECT}\", found {found}: not a WhatsApp Business webhook"
                    ),
                },
            ))
        }
        Err(e) => Err(bad("", "object", e)),
    }
}

/// The exact path: level by level, so a wrong shape is reported where it is and the rest of
/// the body is still decoded.
fn decode_exact(
    text: &str,
    record: u64,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) {
    let body: Body<'_> = match serde_json::from_str(text) {
        Ok(b) => b,
        Err(e) => return reject_unparsable(text, &e, record, report),
    };
    if let Err(b) = check_object(body.object) {
        return push_bad(record, b, report);
    }
    let entries = match array(body.entry) {
        Ok(e) => e,
        Err(e) => return push_bad(record, bad("", "entry", e), report),
    };
    if entries.is_empty() {
        report.skip("whatsapp_empty_body");
    }
    for (ei, entry) in entries.iter().enumerate() {
        let changes = match json::object::<Entry<'_>>(entry).and_then(|e| array(e.changes)) {
            Ok(c) => c,
            Err(e) => {
                push_bad(record, bad(&format!("entry[{ei}]"), "changes", e), report);
                continue;
            }
        };
        for (ci, change) in changes.iter().enumerate() {
            let loc = Loc {
                entry: ei,
                change: ci,
                item: None,
            };
            let parsed = match parse_change_exact(change, loc) {
                Ok(p) => p,
                Err(b) => {
                    push_bad(record, b, report);
                    continue;
                }
            };
            if let Err(b) = decode_change(parsed, loc, record, pseudonymizer, sink, report) {
                push_bad(record, b, report);
            }
        }
    }
}

fn parse_change_exact(change: &RawValue, loc: Loc) -> Result<ParsedChange<'_>, Bad> {
    let cp = loc.pointer();
    let vp = format!("{cp}.value");
    let change: Change<'_> = json::object(change).map_err(|e| bad(&cp, "", e))?;
    let mut parsed = ParsedChange {
        field: change.field,
        value_present: change.value.is_some(),
        metadata: None,
        contacts: Vec::new(),
        messages: Vec::new(),
        statuses: Vec::new(),
        echoes: Vec::new(),
        value_errors: false,
    };
    // A change of another field may have any value; judge its field first.
    let field = opt_str(change.field).map_err(|e| bad(&cp, "field", e))?;
    if !matches!(
        field.as_deref(),
        None | Some("messages" | "smb_message_echoes")
    ) {
        return Ok(parsed);
    }
    let Some(raw_value) = change.value else {
        return Ok(parsed);
    };
    let value: Value<'_> = json::object(raw_value).map_err(|e| bad(&cp, "value", e))?;
    parsed.value_errors = value.errors.is_some();
    if let Some(m) = value.metadata {
        parsed.metadata = Some(json::object(m).map_err(|e| bad(&vp, "metadata", e))?);
    }
    for (i, c) in array(value.contacts)
        .map_err(|e| bad(&vp, "contacts", e))?
        .into_iter()
        .enumerate()
    {
        let c: Contact<'_> =
            json::object(c).map_err(|e| bad(&format!("{vp}.contacts[{i}]"), "", e))?;
        parsed.contacts.push(c);
    }
    parsed.messages = array(value.messages)
        .map_err(|e| bad(&vp, "messages", e))?
        .into_iter()
        .map(json::object)
        .collect();
    parsed.echoes = array(value.message_echoes)
        .map_err(|e| bad(&vp, "message_echoes", e))?
        .into_iter()
        .map(json::object)
        .collect();
    parsed.statuses = array(value.statuses)
        .map_err(|e| bad(&vp, "statuses", e))?
        .into_iter()
        .map(json::object)
        .collect();
    Ok(parsed)
}

fn decode_change(
    change: ParsedChange<'_>,
    loc: Loc,
    record: u64,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Bad> {
    let field = opt_str(change.field).map_err(|e| bad_at(loc, "field", e))?;
    let is_echo = match field.as_deref() {
        None | Some("messages") => false,
        Some("smb_message_echoes") => true,
        Some(_) => {
            report.skip("whatsapp_other_field");
            return Ok(());
        }
    };
    if !change.value_present {
        return Err(bad_at(loc, "value", FieldError::missing()));
    }
    let vp = || format!("{}.value", loc.pointer());
    let phone_number_id = match &change.metadata {
        Some(meta) => {
            opt_id(meta.phone_number_id).map_err(|e| bad(&vp(), "metadata.phone_number_id", e))?
        }
        None => None,
    };
    let mut contacts = Vec::with_capacity(change.contacts.len());
    for (i, c) in change.contacts.iter().enumerate() {
        let p = || format!("{}.contacts[{i}]", vp());
        let wa_id = opt_id(c.wa_id).map_err(|e| bad(&p(), "wa_id", e))?;
        let user_id = opt_str(c.user_id).map_err(|e| bad(&p(), "user_id", e))?;
        contacts.push((given(wa_id), given(user_id)));
    }
    let inbox = phone_number_id.as_deref();
    let (list, author, messages) = if is_echo {
        ("message_echoes", Author::Agent, &change.echoes)
    } else {
        ("messages", Author::Customer, &change.messages)
    };
    if messages.is_empty() && change.statuses.is_empty() {
        // e.g. a change that only reports `errors` at the value level.
        report.skip(if change.value_errors {
            "whatsapp_value_errors"
        } else {
            "whatsapp_empty_change"
        });
    }
    for (i, m) in messages.iter().enumerate() {
        let at = Loc {
            item: Some((list, i)),
            ..loc
        };
        let result = match m {
            Ok(m) => decode_message(m, at, author, inbox, &contacts, pseudonymizer, sink),
            Err(e) => Err(bad_at(
                at,
                "",
                FieldError {
                    code: e.code,
                    reason: e.reason.clone(),
                },
            )),
        };
        if let Err(b) = result {
            push_bad(record, b, report);
        }
    }
    for (i, s) in change.statuses.iter().enumerate() {
        let at = Loc {
            item: Some(("statuses", i)),
            ..loc
        };
        let result = match s {
            Ok(s) => decode_status(s, at, inbox, &contacts, pseudonymizer, sink),
            Err(e) => Err(bad_at(
                at,
                "",
                FieldError {
                    code: e.code,
                    reason: e.reason.clone(),
                },
            )),
        };
        if let Err(b) = result {
            push_bad(record, b, report);
        }
    }
    Ok(())
}

fn timestamp(raw: Option<&RawValue>, loc: Loc) -> Result<i64, Bad> {
    let secs = opt_number(raw)
        .map_err(|e| bad_at(loc, "timestamp", e))?
        .ok_or_else(|| bad_at(loc, "timestamp", FieldError::missing()))?;
    time::from_unix_seconds(secs).map_err(|reason| {
        bad_at(
            loc,
            "timestamp",
            FieldError {
                code: codes::BAD_TIMESTAMP,
                reason,
            },
        )
    })
}

type ContactIds<'a> = (Option<Cow<'a, str>>, Option<Cow<'a, str>>);

/// An identity as given: absent, `null` and blank all mean "not given", so that a blank phone
/// (`"from": ""` beside a `from_user_id`) leaves room for the business-scoped id.
fn given(value: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    value.filter(|v| !v.trim().is_empty())
}

/// The customer's identity: the phone when given, else the phone a `contacts[]` entry gives
/// for the business-scoped user id (an entry that carries both links them), else that id.
fn customer<'a>(
    phone: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    contacts: &[ContactIds<'a>],
) -> Option<Cow<'a, str>> {
    phone
        .or_else(|| {
            let uid = user_id.as_deref()?;
            contacts
                .iter()
                .find(|(_, u)| u.as_deref() == Some(uid))
                .and_then(|(w, _)| w.clone())
        })
        .or(user_id)
}

/// What a message is: a new message, or a change to an earlier one (stored as a status of
/// that message, see the module docs).
enum Shape<'a> {
    Message,
    Change {
        status: &'static str,
        target: Option<Cow<'a, str>>,
    },
}

fn shape<'a>(m: &Message<'a>, type_: Option<&str>, loc: Loc) -> Result<Shape<'a>, Bad> {
    let changes = |field: &'static str, raw: Option<&'a RawValue>, status: &'static str| {
        let target = match raw.filter(|r| r.get() != "null") {
            Some(r) => {
                let c: Changes<'_> = json::object(r).map_err(|e| bad_at(loc, field, e))?;
                given(
                    opt_str(c.original_message_id)
                        .map_err(|e| bad_at(loc, &format!("{field}.original_message_id"), e))?,
                )
            }
            None => None,
        };
        Ok(Shape::Change { status, target })
    };
    match type_ {
        Some("reaction") => {
            let (target, emoji) = match m.reaction.filter(|r| r.get() != "null") {
                Some(r) => {
                    let r: Reaction<'_> =
                        json::object(r).map_err(|e| bad_at(loc, "reaction", e))?;
                    let target =
                        opt_str(r.message_id).map_err(|e| bad_at(loc, "reaction.message_id", e))?;
                    let emoji = opt_str(r.emoji).map_err(|e| bad_at(loc, "reaction.emoji", e))?;
                    (given(target), given(emoji))
                }
                None => (None, None),
            };
            Ok(Shape::Change {
                status: if emoji.is_some() {
                    "reacted"
                } else {
                    "reaction_removed"
                },
                target,
            })
        }
        Some("edit") => changes("edit", m.edit, "edited"),
        Some("revoke") => changes("revoke", m.revoke, "deleted"),
        _ => Ok(Shape::Message),
    }
}

fn decode_message(
    m: &Message<'_>,
    loc: Loc,
    author: Author,
    inbox: Option<&str>,
    contacts: &[ContactIds<'_>],
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
) -> Result<(), Bad> {
    let wamid = opt_str(m.id)
        .map_err(|e| bad_at(loc, "id", e))?
        .ok_or_else(|| bad_at(loc, "id", FieldError::missing()))?;
    let ts = timestamp(m.timestamp, loc)?;
    let type_ = opt_str(m.type_).map_err(|e| bad_at(loc, "type", e))?;
    let shape = shape(m, type_.as_deref(), loc)?;
    // The customer: the sender of an inbound message, the recipient of an echo.
    let (phone_field, user_field) = if author == Author::Customer {
        (("from", m.from), ("from_user_id", m.from_user_id))
    } else {
        (("to", m.to), ("to_user_id", m.to_user_id))
    };
    let phone = given(opt_id(phone_field.1).map_err(|e| bad_at(loc, phone_field.0, e))?);
    let user_id = given(opt_str(user_field.1).map_err(|e| bad_at(loc, user_field.0, e))?);
    let identity = customer(phone, user_id, contacts);
    let customer_key = identity
        .as_deref()
        .and_then(|i| pseudonymizer.customer_key(i));

    // Keys in sorted order: attrs are byte-stable.
    let mut attrs = json::Attrs::new();
    if let Some(code) = first_error(m.errors).0 {
        attrs.str("error_code", &code);
    }
    if type_.as_deref() == Some("interactive")
        && let Some(sub) = m
            .interactive
            .and_then(|i| json::object::<Typed<'_>>(i).ok())
            .and_then(|i| opt_str(i.type_).ok().flatten())
    {
        attrs.str("interactive_type", &sub);
    }
    if m.referral.is_some() {
        attrs.bool("referral", true);
    }
    if let Some(t) = &type_ {
        attrs.str("type", t);
    }
    let attrs = attrs.finish();

    let (kind, status, message_id) = match &shape {
        Shape::Message if author == Author::Customer => (Kind::MessageIn, None, Some(&*wamid)),
        Shape::Message => (Kind::MessageOut, None, Some(&*wamid)),
        Shape::Change { status, target } => (Kind::MessageStatus, Some(*status), target.as_deref()),
    };
    let mut e = EventRef::new(&wamid, ts, Source::WhatsApp, kind);
    e.customer_key = customer_key;
    e.channel = Some(CHANNEL);
    e.inbox = inbox;
    e.author = Some(if type_.as_deref() == Some("system") {
        Author::System
    } else {
        author
    });
    e.message_id = message_id;
    e.status = status;
    e.attrs = attrs.as_deref();
    sink.push(&e);
    Ok(())
}

/// The code and title of the first entry of an `errors` array, when there is one.
fn first_error(raw: Option<&RawValue>) -> (Option<String>, Option<String>) {
    let Some(first) = array(raw).ok().and_then(|a| a.into_iter().next()) else {
        return (None, None);
    };
    let Ok(item) = json::object::<ErrorItem<'_>>(first) else {
        return (None, None);
    };
    let code = opt_id(item.code).ok().flatten().map(|c| c.into_owned());
    let title = opt_str(item.title).ok().flatten().map(|t| t.into_owned());
    (code, title)
}

fn decode_status(
    s: &Status<'_>,
    loc: Loc,
    inbox: Option<&str>,
    contacts: &[ContactIds<'_>],
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
) -> Result<(), Bad> {
    let wamid = opt_str(s.id)
        .map_err(|e| bad_at(loc, "id", e))?
        .ok_or_else(|| bad_at(loc, "id", FieldError::missing()))?;
    let status = opt_str(s.status)
        .map_err(|e| bad_at(loc, "status", e))?
        .ok_or_else(|| bad_at(loc, "status", FieldError::missing()))?;
    if status.is_empty() || !status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(bad_at(
            loc,
            "status",
            FieldError::invalid(format!(
                "status {:?} is not a WhatsApp status word (sent, delivered, read, failed)",
                status.chars().take(40).collect::<String>()
            )),
        ));
    }
    let ts = timestamp(s.timestamp, loc)?;
    let phone = given(opt_id(s.recipient_id).map_err(|e| bad_at(loc, "recipient_id", e))?);
    let user_id =
        given(opt_str(s.recipient_user_id).map_err(|e| bad_at(loc, "recipient_user_id", e))?);
    let customer_key = customer(phone, user_id, contacts)
        .as_deref()
        .and_then(|i| pseudonymizer.customer_key(i));
    let (code, title) = first_error(s.errors);
    let mut attrs = json::Attrs::new();
    if let Some(t) = &title {
        attrs.str("error_title", t);
    }
    if let Some(category) = s
        .pricing
        .and_then(|r| json::object::<Pricing<'_>>(r).ok())
        .and_then(|pr| opt_str(pr.category).ok().flatten())
    {
        attrs.str("pricing_category", &category);
    }
    let attrs = attrs.finish();
    let event_id = format!("{wamid}:{status}");
    let mut e = EventRef::new(&event_id, ts, Source::WhatsApp, Kind::MessageStatus);
    e.customer_key = customer_key;
    e.channel = Some(CHANNEL);
    e.inbox = inbox;
    e.message_id = Some(&wamid);
    e.status = Some(&status);
    e.reason = code.as_deref();
    e.attrs = attrs.as_deref();
    sink.push(&e);
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
            "fixtures/whatsapp/every-message-type.jsonl",
            "fixtures/whatsapp/statuses.jsonl",
            "fixtures/whatsapp/echo.json",
            "fixtures/whatsapp/blank-phone-fields.jsonl",
            "fixtures/whatsapp/message-changes.jsonl",
            "corpus/whatsapp/pywa-messages.jsonl",
            "corpus/whatsapp/pywa-edit-revoke.jsonl",
            "corpus/whatsapp/pywa-echoes.jsonl",
            "corpus/whatsapp/pywa-statuses.jsonl",
            "corpus/whatsapp/chatwoot-spec-cloud.jsonl",
            "corpus/whatsapp/whatsapp-api-js-bsuid.jsonl",
            "simulated/whatsapp/2026-11-02.jsonl",
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            lines.extend(text.lines().map(str::to_owned));
        }
        let batched = std::fs::read(dir.join("fixtures/whatsapp/batched-entries.json")).unwrap();
        let flat = String::from_utf8(crate::sources::document_lines(&batched)).unwrap();
        lines.extend(flat.lines().map(str::to_owned));
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
