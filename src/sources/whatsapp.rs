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
//!   `message_out` by an agent.
//!
//! The customer is identified by phone (`from`, `wa_id`, `recipient_id`) when WhatsApp
//! gives one, else by the business-scoped user id (`from_user_id`, `user_id`,
//! `recipient_user_id`). Message text, captions, media, locations and profile names are read
//! past and never kept; only the message `type` goes into `attrs`.

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

fn full(pointer: &str, field: &str) -> String {
    if pointer.is_empty() {
        field.to_owned()
    } else {
        format!("{pointer}.{field}")
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
    let body: Body<'_> = match serde_json::from_str(text) {
        Ok(b) => b,
        Err(e) => return reject_unparsable(text, &e, record, report),
    };
    let fail = |b: Bad, report: &mut Report| {
        let field = full(&b.pointer, &b.field);
        report.reject(record, b.pointer, field, b.err.code, b.err.reason)
    };
    match opt_str(body.object) {
        Ok(Some(o)) if o == OBJECT => {}
        Ok(other) => {
            let found = other.map_or("nothing".to_owned(), |o| format!("{o:?}"));
            return fail(
                bad(
                    "",
                    "object",
                    FieldError {
                        code: codes::WRONG_SOURCE,
                        reason: format!(
                            "expected \"{OBJECT}\", found {found}: not a WhatsApp Business webhook"
                        ),
                    },
                ),
                report,
            );
        }
        Err(e) => return fail(bad("", "object", e), report),
    }
    let entries = match array(body.entry) {
        Ok(e) => e,
        Err(e) => return fail(bad("", "entry", e), report),
    };
    if entries.is_empty() {
        report.skip("whatsapp_empty_body");
    }
    for (ei, entry) in entries.iter().enumerate() {
        let ep = format!("entry[{ei}]");
        let changes = match json::object::<Entry<'_>>(entry).and_then(|e| array(e.changes)) {
            Ok(c) => c,
            Err(e) => {
                fail(bad(&ep, "changes", e), report);
                continue;
            }
        };
        for (ci, change) in changes.iter().enumerate() {
            let cp = format!("{ep}.changes[{ci}]");
            if let Err(b) = decode_change(change, &cp, record, pseudonymizer, sink, report) {
                fail(b, report);
            }
        }
    }
}

fn decode_change(
    change: &RawValue,
    cp: &str,
    record: u64,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Bad> {
    let change: Change<'_> = json::object(change).map_err(|e| bad(cp, "", e))?;
    let field = opt_str(change.field).map_err(|e| bad(cp, "field", e))?;
    let is_echo = match field.as_deref() {
        None | Some("messages") => false,
        Some("smb_message_echoes") => true,
        Some(_) => {
            report.skip("whatsapp_other_field");
            return Ok(());
        }
    };
    let vp = format!("{cp}.value");
    let raw_value = change
        .value
        .ok_or_else(|| bad(cp, "value", FieldError::missing()))?;
    let value: Value<'_> = json::object(raw_value).map_err(|e| bad(cp, "value", e))?;
    let phone_number_id = match value.metadata {
        Some(m) => {
            let meta: Metadata<'_> = json::object(m).map_err(|e| bad(&vp, "metadata", e))?;
            opt_id(meta.phone_number_id).map_err(|e| bad(&vp, "metadata.phone_number_id", e))?
        }
        None => None,
    };
    let mut contacts = Vec::new();
    for (i, c) in array(value.contacts)
        .map_err(|e| bad(&vp, "contacts", e))?
        .into_iter()
        .enumerate()
    {
        let p = format!("{vp}.contacts[{i}]");
        let c: Contact<'_> = json::object(c).map_err(|e| bad(&p, "", e))?;
        let wa_id = opt_id(c.wa_id).map_err(|e| bad(&p, "wa_id", e))?;
        let user_id = opt_str(c.user_id).map_err(|e| bad(&p, "user_id", e))?;
        contacts.push((wa_id, user_id));
    }
    let inbox = phone_number_id.as_deref();

    let (messages_key, author) = if is_echo {
        ("message_echoes", Author::Agent)
    } else {
        ("messages", Author::Customer)
    };
    let raw_messages = if is_echo {
        value.message_echoes
    } else {
        value.messages
    };
    let messages = array(raw_messages).map_err(|e| bad(&vp, messages_key, e))?;
    let statuses = array(value.statuses).map_err(|e| bad(&vp, "statuses", e))?;
    if messages.is_empty() && statuses.is_empty() {
        // e.g. a change that only reports `errors` at the value level.
        report.skip(if value.errors.is_some() {
            "whatsapp_value_errors"
        } else {
            "whatsapp_empty_change"
        });
    }
    for (i, m) in messages.iter().enumerate() {
        let p = format!("{vp}.{messages_key}[{i}]");
        if let Err(b) = decode_message(m, &p, author, inbox, &contacts, pseudonymizer, sink) {
            let field = full(&b.pointer, &b.field);
            report.reject(record, b.pointer, field, b.err.code, b.err.reason);
        }
    }
    for (i, s) in statuses.iter().enumerate() {
        let p = format!("{vp}.statuses[{i}]");
        if let Err(b) = decode_status(s, &p, inbox, pseudonymizer, sink) {
            let field = full(&b.pointer, &b.field);
            report.reject(record, b.pointer, field, b.err.code, b.err.reason);
        }
    }
    Ok(())
}

fn timestamp(raw: Option<&RawValue>, p: &str) -> Result<i64, Bad> {
    let secs = opt_number(raw)
        .map_err(|e| bad(p, "timestamp", e))?
        .ok_or_else(|| bad(p, "timestamp", FieldError::missing()))?;
    time::from_unix_seconds(secs).map_err(|reason| {
        bad(
            p,
            "timestamp",
            FieldError {
                code: codes::BAD_TIMESTAMP,
                reason,
            },
        )
    })
}

type ContactIds<'a> = (
    Option<std::borrow::Cow<'a, str>>,
    Option<std::borrow::Cow<'a, str>>,
);

fn decode_message(
    raw: &RawValue,
    p: &str,
    author: Author,
    inbox: Option<&str>,
    contacts: &[ContactIds<'_>],
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
) -> Result<(), Bad> {
    let m: Message<'_> = json::object(raw).map_err(|e| bad(p, "", e))?;
    let wamid = opt_str(m.id)
        .map_err(|e| bad(p, "id", e))?
        .ok_or_else(|| bad(p, "id", FieldError::missing()))?;
    let ts = timestamp(m.timestamp, p)?;
    let type_ = opt_str(m.type_).map_err(|e| bad(p, "type", e))?;
    // The customer: the sender of an inbound message, the recipient of an echo.
    let (phone_field, user_field) = if author == Author::Customer {
        (("from", m.from), ("from_user_id", m.from_user_id))
    } else {
        (("to", m.to), ("to_user_id", m.to_user_id))
    };
    let phone = opt_id(phone_field.1).map_err(|e| bad(p, phone_field.0, e))?;
    let user_id = opt_str(user_field.1).map_err(|e| bad(p, user_field.0, e))?;
    let identity = phone
        .or_else(|| {
            // A contact that carries both ids tells us the phone behind a user id.
            let uid = user_id.as_deref()?;
            contacts
                .iter()
                .find(|(_, u)| u.as_deref() == Some(uid))
                .and_then(|(w, _)| w.clone())
        })
        .or(user_id);
    let customer_key = identity
        .as_deref()
        .and_then(|i| pseudonymizer.customer_key(i))
        .map(str::to_owned);

    let mut attrs: Vec<(&str, serde_json::Value)> = Vec::new();
    if let Some(t) = &type_ {
        attrs.push(("type", t.as_ref().into()));
        if t == "interactive"
            && let Some(sub) = m
                .interactive
                .and_then(|i| json::object::<Typed<'_>>(i).ok())
                .and_then(|i| opt_str(i.type_).ok().flatten())
        {
            attrs.push(("interactive_type", sub.as_ref().into()));
        }
    }
    if m.referral.is_some() {
        attrs.push(("referral", true.into()));
    }
    if let Some(code) = first_error(m.errors).0 {
        attrs.push(("error_code", code.into()));
    }
    let attrs = json::attrs_of(&attrs);

    let kind = if author == Author::Customer {
        Kind::MessageIn
    } else {
        Kind::MessageOut
    };
    let mut e = EventRef::new(&wamid, ts, Source::WhatsApp, kind);
    e.customer_key = customer_key.as_deref();
    e.channel = Some(CHANNEL);
    e.inbox = inbox;
    e.author = Some(if type_.as_deref() == Some("system") {
        Author::System
    } else {
        author
    });
    e.message_id = Some(&wamid);
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
    raw: &RawValue,
    p: &str,
    inbox: Option<&str>,
    pseudonymizer: &mut Pseudonymizer,
    sink: &mut dyn EventSink,
) -> Result<(), Bad> {
    let s: Status<'_> = json::object(raw).map_err(|e| bad(p, "", e))?;
    let wamid = opt_str(s.id)
        .map_err(|e| bad(p, "id", e))?
        .ok_or_else(|| bad(p, "id", FieldError::missing()))?;
    let status = opt_str(s.status)
        .map_err(|e| bad(p, "status", e))?
        .ok_or_else(|| bad(p, "status", FieldError::missing()))?;
    if status.is_empty() || !status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(bad(
            p,
            "status",
            FieldError::invalid(format!(
                "status {:?} is not a WhatsApp status word (sent, delivered, read, failed)",
                status.chars().take(40).collect::<String>()
            )),
        ));
    }
    let ts = timestamp(s.timestamp, p)?;
    let phone = opt_id(s.recipient_id).map_err(|e| bad(p, "recipient_id", e))?;
    let user_id = opt_str(s.recipient_user_id).map_err(|e| bad(p, "recipient_user_id", e))?;
    let customer_key = phone
        .or(user_id)
        .as_deref()
        .and_then(|i| pseudonymizer.customer_key(i))
        .map(str::to_owned);
    let (code, title) = first_error(s.errors);
    let mut attrs: Vec<(&str, serde_json::Value)> = Vec::new();
    if let Some(t) = title {
        attrs.push(("error_title", t.into()));
    }
    if let Some(category) = s
        .pricing
        .and_then(|r| json::object::<Pricing<'_>>(r).ok())
        .and_then(|pr| opt_str(pr.category).ok().flatten())
    {
        attrs.push(("pricing_category", category.as_ref().into()));
    }
    let attrs = json::attrs_of(&attrs);
    let event_id = format!("{wamid}:{status}");
    let mut e = EventRef::new(&event_id, ts, Source::WhatsApp, Kind::MessageStatus);
    e.customer_key = customer_key.as_deref();
    e.channel = Some(CHANNEL);
    e.inbox = inbox;
    e.message_id = Some(&wamid);
    e.status = Some(&status);
    e.reason = code.as_deref();
    e.attrs = attrs.as_deref();
    sink.push(&e);
    Ok(())
}
