//! Every source shape and every kind of bad input, through the pure decoders.
//!
//! Fixtures live in sample-data/fixtures/ (see its README). Expected events are pinned by insta
//! snapshots (tests/snapshots/) and the facts that matter are asserted by hand.

use std::path::Path;

use chrono::{DateTime, Utc};
use supportlake::event::{Author, Event, Kind, Source};
use supportlake::pseudonym::{Identity, PseudonymKey, Pseudonymizer};
use supportlake::sources::{self, Decoded, SourceFormat, codes};

const KEY: &[u8] = b"fixture-key-0123456789";

fn received() -> DateTime<Utc> {
    "2026-11-02T13:00:00Z".parse().unwrap()
}

fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(&PseudonymKey::new(KEY.to_vec()).unwrap())
}

fn key_of(identity: &str) -> String {
    let id = supportlake::pseudonym::normalize_identity(identity).unwrap();
    pseudonymizer().key_of(&id)
}

fn decode(format: SourceFormat, fixture: &str) -> Decoded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-data/fixtures")
        .join(fixture);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sources::decode_input(format, &bytes, &mut pseudonymizer(), received())
}

fn jsonl(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Nothing personal from the fixtures may reach an event.
fn assert_no_personal_data(events: &[Event], needles: &[&str]) {
    let text = jsonl(events);
    for n in needles {
        assert!(!text.contains(n), "{n:?} leaked into an event:\n{text}");
    }
}

#[test]
fn whatsapp_every_inbound_message_type() {
    let d = decode(SourceFormat::WhatsApp, "whatsapp/every-message-type.jsonl");
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    assert_eq!(d.events.len(), 16);
    let joana = key_of("+5511987654321");
    // The reaction (line 12) is no message: a status of the message it reacts to.
    let reaction = &d.events[11];
    assert_eq!(reaction.event_id, "wamid.REACTION0001");
    assert_eq!(
        (reaction.kind, reaction.status.as_deref()),
        (Kind::MessageStatus, Some("reacted"))
    );
    assert_eq!(reaction.message_id.as_deref(), Some("wamid.AGENT01"));
    for (i, e) in d.events.iter().enumerate() {
        assert_eq!(e.source, Source::WhatsApp);
        if i == 11 {
            assert_eq!(
                e.customer_key.as_deref(),
                Some(joana.as_str()),
                "{}",
                e.event_id
            );
            continue;
        }
        assert_eq!(e.kind, Kind::MessageIn);
        assert_eq!(
            e.conversation_id, None,
            "WhatsApp messages are linked later"
        );
        assert_eq!(
            e.customer_key.as_deref(),
            Some(joana.as_str()),
            "{}",
            e.event_id
        );
        assert_eq!(e.inbox.as_deref(), Some("104729381001"));
        assert_eq!(e.channel.as_deref(), Some("whatsapp"));
        assert_eq!(e.message_id.as_deref(), Some(e.event_id.as_str()));
    }
    let types: Vec<&str> = d
        .events
        .iter()
        .map(|e| e.attrs.as_deref().unwrap())
        .collect();
    assert_eq!(types[0], r#"{"type":"text"}"#);
    assert_eq!(
        types[8],
        r#"{"interactive_type":"button_reply","type":"interactive"}"#
    );
    assert_eq!(types[14], r#"{"error_code":"131051","type":"unsupported"}"#);
    assert_eq!(types[15], r#"{"referral":true,"type":"text"}"#);
    let system = &d.events[13];
    assert_eq!(system.author, Some(Author::System));
    assert!(
        d.events[..13]
            .iter()
            .all(|e| e.author == Some(Author::Customer))
    );
    assert_eq!(
        d.events[0].ts,
        "2026-11-02T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_no_personal_data(
        &d.events,
        &[
            "Joana",
            "Olá",
            "5511987654321",
            "987654321",
            "Augusta",
            "CPF",
            "Pedro",
            "91234",
            "boleto",
            "anúncio",
            "-23.56",
        ],
    );
    insta::assert_snapshot!(jsonl(&d.events));
}

#[test]
fn whatsapp_statuses_sent_delivered_read_failed() {
    let d = decode(SourceFormat::WhatsApp, "whatsapp/statuses.jsonl");
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    let ids: Vec<&str> = d.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "wamid.AGENT01:sent",
            "wamid.AGENT01:delivered",
            "wamid.AGENT01:read",
            "wamid.AGENT02:failed"
        ]
    );
    assert!(d.events.iter().all(|e| e.kind == Kind::MessageStatus));
    let failed = &d.events[3];
    assert_eq!(failed.status.as_deref(), Some("failed"));
    assert_eq!(failed.reason.as_deref(), Some("131047"));
    assert_eq!(
        failed.attrs.as_deref(),
        Some(r#"{"error_title":"Re-engagement message"}"#)
    );
    assert_eq!(
        d.events[0].attrs.as_deref(),
        Some(r#"{"pricing_category":"service"}"#)
    );
    let joana = key_of("5511987654321");
    assert!(
        d.events
            .iter()
            .all(|e| e.customer_key.as_deref() == Some(joana.as_str()))
    );
    insta::assert_snapshot!(jsonl(&d.events));
}

#[test]
fn whatsapp_several_entries_changes_and_business_scoped_ids() {
    let d = decode(SourceFormat::WhatsApp, "whatsapp/batched-entries.json");
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    let ids: Vec<&str> = d.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "wamid.BATCH01",
            "wamid.BATCH02",
            "wamid.AGENT09:delivered",
            "wamid.BSUID01",
            "wamid.AGENT10:read"
        ]
    );
    // The pre-2016 Brazilian number (no ninth digit) is the same customer as the full one.
    let lucas = key_of("+55 11 98765-0000");
    assert_eq!(d.events[0].customer_key.as_deref(), Some(lucas.as_str()));
    // A customer known only by a business-scoped user id, in a message and in a status.
    let bsuid = pseudonymizer().key_of(&Identity::ContactId("BR.88231212002341".into()));
    assert_eq!(d.events[3].customer_key.as_deref(), Some(bsuid.as_str()));
    assert_eq!(d.events[4].customer_key.as_deref(), Some(bsuid.as_str()));
    assert_eq!(d.events[3].inbox.as_deref(), Some("104729381002"));
    assert_eq!(d.report.skipped.get("whatsapp_other_field"), Some(&1));
}

#[test]
fn whatsapp_business_app_echo_is_an_agent_message() {
    let d = decode(SourceFormat::WhatsApp, "whatsapp/echo.json");
    assert_eq!(d.events.len(), 1);
    let e = &d.events[0];
    assert_eq!((e.kind, e.author), (Kind::MessageOut, Some(Author::Agent)));
    assert_eq!(
        e.customer_key.as_deref(),
        Some(key_of("+5511987654321").as_str())
    );
}

/// Regression: WhatsApp sends `"from": ""`, `"wa_id": ""`, `"recipient_id": ""` (and an
/// echo's `"to": ""`) for a customer known only by a business-scoped id. The blank phone hid
/// the business-scoped id, and the customer got no key.
#[test]
fn whatsapp_blank_phone_fields_give_way_to_the_business_scoped_id() {
    let d = decode(SourceFormat::WhatsApp, "whatsapp/blank-phone-fields.jsonl");
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    let renata = pseudonymizer().key_of(&Identity::ContactId("BR.7700112233445566".into()));
    let got: Vec<(&str, Kind, Option<&str>)> = d
        .events
        .iter()
        .map(|e| (e.event_id.as_str(), e.kind, e.customer_key.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("wamid.BLANK01", Kind::MessageIn, Some(renata.as_str())),
            (
                "wamid.AGENTBLANK01:delivered",
                Kind::MessageStatus,
                Some(renata.as_str())
            ),
            ("wamid.BLANKECHO01", Kind::MessageOut, Some(renata.as_str())),
        ]
    );
    assert_no_personal_data(&d.events, &["Renata", "@renata", "pedido"]);
}

/// (event id, kind, status, message id, author) of an event.
type Change<'a> = (
    &'a str,
    Kind,
    Option<&'a str>,
    Option<&'a str>,
    Option<Author>,
);

/// Regression: edits and deletions (`revoke`) — the customer's, and echoes of the
/// business's own — and reactions were stored as new messages, so they counted as customer
/// turns and replies (a deleted message could satisfy a first response). They are statuses of
/// the message they change.
#[test]
fn whatsapp_edits_revokes_and_reactions_are_statuses_not_messages() {
    let d = decode(SourceFormat::WhatsApp, "whatsapp/message-changes.jsonl");
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    let got: Vec<Change<'_>> = d
        .events
        .iter()
        .map(|e| {
            (
                e.event_id.as_str(),
                e.kind,
                e.status.as_deref(),
                e.message_id.as_deref(),
                e.author,
            )
        })
        .collect();
    use Author::{Agent, Customer};
    use Kind::MessageStatus as S;
    assert_eq!(
        got,
        [
            (
                "wamid.CHG_EDIT",
                S,
                Some("edited"),
                Some("wamid.CHG_IN1"),
                Some(Customer)
            ),
            (
                "wamid.CHG_REACT",
                S,
                Some("reacted"),
                Some("wamid.CHG_AGENT1"),
                Some(Customer)
            ),
            (
                "wamid.CHG_UNREACT",
                S,
                Some("reaction_removed"),
                Some("wamid.CHG_AGENT1"),
                Some(Customer)
            ),
            (
                "wamid.CHG_REVOKE",
                S,
                Some("deleted"),
                Some("wamid.CHG_IN2"),
                Some(Customer)
            ),
            (
                "wamid.CHG_ECHO_REVOKE",
                S,
                Some("deleted"),
                Some("wamid.CHG_APP1"),
                Some(Agent)
            ),
            (
                "wamid.CHG_ECHO_EDIT",
                S,
                Some("edited"),
                Some("wamid.CHG_APP2"),
                Some(Agent)
            ),
        ]
    );
    let joana = key_of("+5511987654321");
    assert!(
        d.events
            .iter()
            .all(|e| e.customer_key.as_deref() == Some(joana.as_str()))
    );
    assert_no_personal_data(&d.events, &["Joana", "corrigido", "boleto", "👍"]);
}

/// Regression: a Chatwoot body without `conversation.meta` (older versions, API channel)
/// lost its customer, who is in the top-level `contact` or `sender`; and a 2020 body (only a
/// `display_id`, the inbox at the top level) was rejected.
#[test]
fn chatwoot_older_body_without_meta_keeps_its_customer() {
    let d = decode(
        SourceFormat::Chatwoot,
        "chatwoot/older-message-bodies.jsonl",
    );
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    let carla = key_of("+55 21 99876-5432");
    let by_id = |id: &str| {
        d.events
            .iter()
            .find(|e| e.event_id == id)
            .unwrap_or_else(|| panic!("{id} in {:#?}", d.events))
    };
    let old = by_id("chatwoot:message:8101");
    assert_eq!(old.conversation_id.as_deref(), Some("chatwoot:9:311"));
    assert_eq!(old.inbox.as_deref(), Some("9"));
    assert_eq!(old.customer_key.as_deref(), Some(carla.as_str()));
    let api = by_id("chatwoot:message:8102");
    assert_eq!(
        (api.kind, api.author),
        (Kind::MessageIn, Some(Author::Customer))
    );
    assert_eq!(api.customer_key.as_deref(), Some(carla.as_str()));
    assert_eq!(api.channel.as_deref(), Some("api"));
    // An agent's reply in the same shape: its sender is the agent, the customer the contact.
    let reply = by_id("chatwoot:message:8103");
    assert_eq!(
        (reply.kind, reply.author),
        (Kind::MessageOut, Some(Author::Agent))
    );
    assert_eq!(reply.agent_id.as_deref(), Some("chatwoot:12"));
    assert_eq!(reply.customer_key.as_deref(), Some(carla.as_str()));
    assert_no_personal_data(&d.events, &["Carla", "99876", "boleto"]);
}

/// Chatwoot stores a WhatsApp reaction as an incoming message (`is_reaction`) and marks a
/// message an agent deleted (`deleted`): neither is a message here.
#[test]
fn chatwoot_reactions_and_deletions_are_statuses_not_messages() {
    let d = decode(
        SourceFormat::Chatwoot,
        "chatwoot/older-message-bodies.jsonl",
    );
    let changes: Vec<Change<'_>> = d
        .events
        .iter()
        .filter(|e| e.kind == Kind::MessageStatus)
        .map(|e| {
            (
                e.event_id.as_str(),
                e.kind,
                e.status.as_deref(),
                e.message_id.as_deref(),
                e.author,
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "chatwoot:message:8104",
                Kind::MessageStatus,
                Some("reacted"),
                Some("wamid.CW8103"),
                Some(Author::Customer)
            ),
            (
                "chatwoot:message:8103:deleted",
                Kind::MessageStatus,
                Some("deleted"),
                Some("8103"),
                Some(Author::Agent)
            ),
        ]
    );
    let deleted = d
        .events
        .iter()
        .find(|e| e.event_id.ends_with(":deleted"))
        .unwrap();
    assert_eq!(
        deleted.ts,
        "2026-11-02T12:17:30Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(deleted.conversation_id.as_deref(), Some("chatwoot:9:311"));
    // Only the three real messages are messages.
    assert_eq!(
        d.events
            .iter()
            .filter(|e| matches!(e.kind, Kind::MessageIn | Kind::MessageOut))
            .count(),
        3
    );
}

#[test]
fn chatwoot_every_event_shape() {
    let d = decode(SourceFormat::Chatwoot, "chatwoot/every-event.jsonl");
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    let kinds: Vec<(Kind, Option<Author>)> = d.events.iter().map(|e| (e.kind, e.author)).collect();
    use Kind::*;
    assert_eq!(
        kinds,
        [
            (ConversationOpened, None),
            (MessageIn, Some(Author::Customer)),
            (MessageOut, Some(Author::Bot)),
            (ConversationQueued, None),
            (ConversationAssigned, None),
            (MessageOut, Some(Author::Agent)), // the private note
            (MessageOut, Some(Author::Agent)),
            (ConversationTransferred, None),
            (ConversationResolved, None),
            (CsatSubmitted, None),
            (ConversationReopened, None),
        ]
    );
    let skipped: Vec<(&str, u64)> = d.report.skipped.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        skipped,
        [
            ("chatwoot_activity", 1),
            ("chatwoot_csat_survey", 1),
            ("chatwoot_other_event", 1),
            ("chatwoot_snoozed", 1),
            ("chatwoot_unassigned", 1)
        ]
    );
    let joana = key_of("+5511987654321");
    for e in &d.events {
        assert_eq!(e.conversation_id.as_deref(), Some("chatwoot:7:42"));
        assert_eq!(e.customer_key.as_deref(), Some(joana.as_str()));
        assert_eq!(e.channel.as_deref(), Some("whatsapp"));
        assert_eq!(e.inbox.as_deref(), Some("7"));
        assert_eq!(e.priority.as_deref(), Some("high"));
    }
    let note = &d.events[5];
    assert_eq!(note.attrs.as_deref(), Some(r#"{"private":true}"#));
    assert_eq!(note.agent_id.as_deref(), Some("chatwoot:101"));
    assert_eq!(d.events[6].attrs, None, "a public reply is not private");
    assert_eq!(d.events[1].message_id.as_deref(), Some("wamid.CW01"));
    let transfer = &d.events[7];
    assert_eq!(transfer.agent_id.as_deref(), Some("chatwoot:102"));
    assert_eq!(transfer.team.as_deref(), Some("support"));
    assert_eq!(d.events[3].team.as_deref(), Some("billing"));
    assert_eq!(
        d.events[3].ts,
        "2026-11-02T12:01:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(d.events[9].csat_score, Some(5));
    assert_no_personal_data(
        &d.events,
        &["Joana", "joana@", "cancelar", "VIP", "ótimo", "Ana Souza"],
    );
    insta::assert_snapshot!(jsonl(&d.events));
}

#[test]
fn chatwoot_without_changed_attributes_or_phone() {
    let d = decode(SourceFormat::Chatwoot, "chatwoot/older-version.json");
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    assert_eq!(d.events.len(), 1);
    let e = &d.events[0];
    assert_eq!(e.kind, Kind::ConversationQueued);
    assert_eq!(
        e.ts,
        "2026-11-02T12:00:50Z".parse::<DateTime<Utc>>().unwrap()
    );
    let contact = pseudonymizer().key_of(&Identity::ContactId("chatwoot-contact:77".into()));
    assert_eq!(e.customer_key.as_deref(), Some(contact.as_str()));
}

#[test]
fn agent_log_every_type() {
    let d = decode(SourceFormat::AgentLog, "agent-log/every-type.jsonl");
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    assert_eq!(d.events.len(), 15);
    use Kind::*;
    let kinds: Vec<Kind> = d.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ConversationOpened,
            MessageOut,
            ConversationQueued,
            ConversationAssigned,
            MessageOut,
            MessageIn,
            MessageOut,
            ConversationTransferred,
            ConversationResolved,
            CsatSubmitted,
            ConversationReopened,
            AgentStatus,
            AgentStatus,
            MessageIn,
            ConversationResolved,
        ]
    );
    let joana = key_of("+5511987654321");
    for i in [0, 5, 10, 13] {
        assert_eq!(
            d.events[i].customer_key.as_deref(),
            Some(joana.as_str()),
            "event {i}"
        );
    }
    assert_eq!(d.events[1].author, Some(Author::Bot));
    assert_eq!(d.events[4].author, Some(Author::Agent));
    assert_eq!(d.events[6].attrs.as_deref(), Some(r#"{"private":true}"#));
    assert_eq!(d.events[9].csat_score, Some(4));
    assert_eq!(d.events[12].status.as_deref(), Some("paused"));
    assert_eq!(d.events[12].reason.as_deref(), Some("lunch"));
    // attrs keep what is useful and drop what is personal, at any depth.
    assert_eq!(
        d.events[12].attrs.as_deref(),
        Some(r#"{"desk":{"floor":3}}"#)
    );
    // -03:00 offsets are instants like any other.
    assert_eq!(
        d.events[11].ts,
        "2026-11-02T11:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    // Without an id, the id is a hash of the content; fractions of a second are kept.
    assert!(
        d.events[13].event_id.starts_with("sha256:"),
        "{}",
        d.events[13].event_id
    );
    assert_eq!(d.events[13].ts.timestamp_subsec_micros(), 250_000);
    // Integers are accepted for ids.
    assert_eq!(d.events[14].event_id, "77");
    assert_eq!(d.events[14].conversation_id.as_deref(), Some("1234"));
    assert_no_personal_data(&d.events, &["never be stored", "Ana Souza", "ana@acme"]);
    insta::assert_snapshot!(jsonl(&d.events));
}

#[test]
fn agent_log_content_ids_are_stable_and_distinct() {
    let line =
        br#"{"ts":"2026-11-02T16:00:00Z","type":"message.received","customer":"+5511987654321"}"#;
    let reordered = br#"{ "customer" : "5511987654321", "type":"message.received","ts":"2026-11-02T13:00:00-03:00"}"#;
    let other =
        br#"{"ts":"2026-11-02T16:00:01Z","type":"message.received","customer":"+5511987654321"}"#;
    let id = |b: &[u8]| {
        sources::decode_lines(SourceFormat::AgentLog, b, &mut pseudonymizer(), received()).events[0]
            .event_id
            .clone()
    };
    assert_eq!(id(line), id(reordered), "same fact, same id");
    assert_ne!(id(line), id(other));
}

#[test]
fn the_documented_examples_decode_cleanly() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/agent-log.md"))
            .unwrap();
    let block = doc
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/agent-log.md has a ```json block of examples");
    let d = sources::decode_lines(
        SourceFormat::AgentLog,
        block.as_bytes(),
        &mut pseudonymizer(),
        received(),
    );
    assert!(d.report.rejects.is_empty(), "{:?}", d.report.rejects);
    let types: std::collections::BTreeSet<&str> =
        d.events.iter().map(|e| e.kind.as_str()).collect();
    // Every agent-log type has an example (10 types; message_status is WhatsApp's).
    assert_eq!(types.len(), 10, "{types:?}");
}

struct Expect {
    fixture: &'static str,
    format: SourceFormat,
    accepted: usize,
    /// (record, field, code) of each reject, in order.
    rejects: &'static [(u64, &'static str, &'static str)],
}

#[test]
fn every_kind_of_bad_input_is_rejected_with_its_place_and_reason() {
    let a = SourceFormat::AgentLog;
    let cases = [
        Expect {
            fixture: "bad/malformed-json.jsonl",
            format: a,
            accepted: 2,
            rejects: &[(2, "", codes::INVALID_JSON), (3, "", codes::INVALID_JSON)],
        },
        Expect {
            fixture: "bad/wrong-type.jsonl",
            format: a,
            accepted: 2,
            rejects: &[
                (2, "score", codes::WRONG_TYPE),
                (3, "conversation_id", codes::WRONG_TYPE),
                (4, "ts", codes::WRONG_TYPE),
                (5, "private", codes::WRONG_TYPE),
            ],
        },
        Expect {
            fixture: "bad/missing-field.jsonl",
            format: a,
            accepted: 2,
            rejects: &[
                (2, "ts", codes::MISSING_FIELD),
                (3, "type", codes::MISSING_FIELD),
                (4, "conversation_id", codes::MISSING_FIELD),
                (5, "score", codes::MISSING_FIELD),
                (6, "agent_id", codes::MISSING_FIELD),
            ],
        },
        Expect {
            fixture: "bad/unknown-type.jsonl",
            format: a,
            accepted: 2,
            rejects: &[(2, "type", codes::UNKNOWN_TYPE)],
        },
        Expect {
            fixture: "bad/impossible-timestamp.jsonl",
            format: a,
            accepted: 2,
            rejects: &[
                (2, "ts", codes::BAD_TIMESTAMP),
                (3, "ts", codes::BAD_TIMESTAMP),
                (4, "ts", codes::BAD_TIMESTAMP),
                (5, "ts", codes::BAD_TIMESTAMP),
            ],
        },
        Expect {
            fixture: "bad/truncated.jsonl",
            format: a,
            accepted: 2,
            rejects: &[(3, "", codes::TRUNCATED)],
        },
        Expect {
            fixture: "bad/non-utf8.jsonl",
            format: a,
            accepted: 2,
            rejects: &[(2, "", codes::NOT_UTF8)],
        },
        Expect {
            fixture: "bad/not-an-object.jsonl",
            format: a,
            accepted: 2,
            rejects: &[
                (2, "", codes::NOT_AN_OBJECT),
                (3, "", codes::NOT_AN_OBJECT),
                (4, "", codes::NOT_AN_OBJECT),
                (5, "", codes::NOT_AN_OBJECT),
            ],
        },
        Expect {
            fixture: "bad/whatsapp-partial.jsonl",
            format: SourceFormat::WhatsApp,
            accepted: 1,
            rejects: &[
                (
                    1,
                    "entry[0].changes[0].value.messages[1].timestamp",
                    codes::BAD_TIMESTAMP,
                ),
                (
                    1,
                    "entry[0].changes[0].value.messages[2].id",
                    codes::MISSING_FIELD,
                ),
                (2, "object", codes::WRONG_SOURCE),
                (3, "entry", codes::WRONG_TYPE),
            ],
        },
    ];
    for case in cases {
        let d = decode(case.format, case.fixture);
        assert_eq!(d.events.len(), case.accepted, "{}: accepted", case.fixture);
        let got: Vec<(u64, &str, &str)> = d
            .report
            .rejects
            .iter()
            .map(|r| (r.position.record, r.field.as_str(), r.code))
            .collect();
        assert_eq!(
            got, case.rejects,
            "{}: {:#?}",
            case.fixture, d.report.rejects
        );
        for r in &d.report.rejects {
            assert!(!r.reason.is_empty());
            // The message names the place, so a person can find the line.
            assert!(
                r.to_string()
                    .starts_with(&format!("record {}", r.position.record))
            );
        }
    }
}

#[test]
fn reject_reasons_read_well() {
    let d = decode(SourceFormat::AgentLog, "bad/impossible-timestamp.jsonl");
    let reasons: Vec<String> = d.report.rejects.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(reasons.join("\n"));
    let d = decode(SourceFormat::AgentLog, "bad/wrong-type.jsonl");
    let reasons: Vec<String> = d.report.rejects.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("wrong_type_reasons", reasons.join("\n"));
}

mod never_panic {
    use super::*;
    use proptest::prelude::*;

    fn any_format() -> impl Strategy<Value = SourceFormat> {
        prop_oneof![
            Just(SourceFormat::WhatsApp),
            Just(SourceFormat::Chatwoot),
            Just(SourceFormat::AgentLog)
        ]
    }

    /// Valid fixture records with one byte range replaced: near-valid input that reaches
    /// deep into the decoders.
    fn mutated_fixture() -> impl Strategy<Value = (SourceFormat, Vec<u8>)> {
        let fixtures: Vec<(SourceFormat, Vec<u8>)> = [
            (SourceFormat::WhatsApp, "whatsapp/every-message-type.jsonl"),
            (SourceFormat::WhatsApp, "whatsapp/statuses.jsonl"),
            (SourceFormat::Chatwoot, "chatwoot/every-event.jsonl"),
            (SourceFormat::AgentLog, "agent-log/every-type.jsonl"),
        ]
        .into_iter()
        .flat_map(|(f, p)| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("sample-data/fixtures")
                .join(p);
            std::fs::read(path)
                .unwrap()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| (f, l.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
        (
            0..fixtures.len(),
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 0..12),
            0usize..16,
        )
            .prop_map(move |(i, at, insert, cut)| {
                let (f, mut line) = fixtures[i].clone();
                let pos = at.index(line.len());
                let end = (pos + cut).min(line.len());
                line.splice(pos..end, insert);
                (f, line)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes(format in any_format(), bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let d = sources::decode_lines(format, &bytes, &mut pseudonymizer(), received());
            // Every non-blank line either produced events, was skipped, or was rejected.
            prop_assert!(d.events.len() as u64 == d.report.events);
        }

        #[test]
        fn near_valid_records((format, line) in mutated_fixture()) {
            let d = sources::decode_lines(format, &line, &mut pseudonymizer(), received());
            for e in &d.events {
                prop_assert!(!e.event_id.is_empty());
            }
        }
    }
}

#[test]
fn a_blank_agent_log_id_is_no_id() {
    // Found by the near-valid-records property: `"id": ""` gave an event with an empty key,
    // which would make every such event a duplicate of the first.
    let line = |id: &str| {
        format!(
            r#"{{{id}"ts":"2026-11-02T10:00:00Z","type":"message.received","conversation_id":"c-1","customer":"+5511987654321"}}"#
        )
    };
    let decode = |l: String| {
        sources::decode_lines(
            SourceFormat::AgentLog,
            l.as_bytes(),
            &mut pseudonymizer(),
            received(),
        )
        .events
    };
    let blank = decode(line(r#""id":"","#));
    let spaces = decode(line(r#""id":"  ","#));
    let none = decode(line(""));
    assert_eq!(blank.len(), 1);
    assert!(!blank[0].event_id.is_empty());
    assert_eq!(blank[0].event_id, none[0].event_id);
    assert_eq!(spaces[0].event_id, none[0].event_id);
}
