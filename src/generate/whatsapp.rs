//! WhatsApp Cloud API webhook bodies.
//!
//! The simulation renders each inbound message and each status as a JSON fragment when
//! it happens; the writer later wraps one or several fragments of the same kind into a
//! POST body (see `output::WaBatcher`), the way Meta batches notifications.

use serde::Serialize;

use super::model::WA_INBOXES;

#[derive(Serialize)]
pub(crate) struct Context<'a> {
    pub(crate) from: &'a str,
    pub(crate) id: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Text<'a> {
    pub(crate) body: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Media<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) caption: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filename: Option<&'a str>,
    pub(crate) mime_type: &'a str,
    pub(crate) sha256: &'a str,
    pub(crate) id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) voice: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) animated: Option<bool>,
}

#[derive(Serialize)]
pub(crate) struct Location<'a> {
    pub(crate) latitude: f64,
    pub(crate) longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct ButtonReply<'a> {
    pub(crate) id: &'a str,
    pub(crate) title: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Interactive<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) button_reply: ButtonReply<'a>,
}

#[derive(Serialize)]
pub(crate) struct Button<'a> {
    pub(crate) payload: &'a str,
    pub(crate) text: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Reaction<'a> {
    pub(crate) message_id: &'a str,
    pub(crate) emoji: &'a str,
}

/// One element of `value.messages`.
#[derive(Serialize)]
pub(crate) struct Message<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) context: Option<Context<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<&'a str>,
    pub(crate) from_user_id: &'a str,
    pub(crate) id: &'a str,
    pub(crate) timestamp: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) image: Option<Media<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) audio: Option<Media<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) document: Option<Media<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sticker: Option<Media<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) location: Option<Location<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) interactive: Option<Interactive<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) button: Option<Button<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reaction: Option<Reaction<'a>>,
}

impl<'a> Message<'a> {
    pub(crate) fn new(
        from: Option<&'a str>,
        from_user_id: &'a str,
        id: &'a str,
        timestamp: &'a str,
        kind: &'a str,
    ) -> Self {
        Self {
            context: None,
            from,
            from_user_id,
            id,
            timestamp,
            kind,
            text: None,
            image: None,
            audio: None,
            document: None,
            sticker: None,
            location: None,
            interactive: None,
            button: None,
            reaction: None,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Profile<'a> {
    pub(crate) name: &'a str,
}

/// One element of `value.contacts`.
#[derive(Serialize)]
pub(crate) struct Contact<'a> {
    pub(crate) profile: Profile<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) wa_id: Option<&'a str>,
    pub(crate) user_id: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Origin {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Conversation<'a> {
    pub(crate) id: &'a str,
    pub(crate) origin: Origin,
}

#[derive(Serialize)]
pub(crate) struct Pricing {
    pub(crate) billable: bool,
    pub(crate) pricing_model: &'static str,
    pub(crate) category: &'static str,
}

#[derive(Serialize)]
pub(crate) struct ErrorData {
    pub(crate) details: &'static str,
}

#[derive(Serialize)]
pub(crate) struct StatusError {
    pub(crate) code: u32,
    pub(crate) title: &'static str,
    pub(crate) message: &'static str,
    pub(crate) error_data: ErrorData,
}

/// One element of `value.statuses`.
#[derive(Serialize)]
pub(crate) struct Status<'a> {
    pub(crate) id: &'a str,
    pub(crate) status: &'a str,
    pub(crate) timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recipient_id: Option<&'a str>,
    pub(crate) recipient_user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) conversation: Option<Conversation<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pricing: Option<Pricing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) errors: Option<[StatusError; 1]>,
}

impl<'a> Status<'a> {
    pub(crate) fn new(
        wamid: &'a str,
        status: &'a str,
        timestamp: &'a str,
        recipient_id: Option<&'a str>,
        recipient_user_id: &'a str,
        conversation_id: &'a str,
    ) -> Self {
        if status == "failed" {
            return Self {
                id: wamid,
                status,
                timestamp,
                recipient_id,
                recipient_user_id,
                conversation: None,
                pricing: None,
                errors: Some([StatusError {
                    code: 131_047,
                    title: "Re-engagement message",
                    message: "Re-engagement message",
                    error_data: ErrorData {
                        details: "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
                    },
                }]),
            };
        }
        Self {
            id: wamid,
            status,
            timestamp,
            recipient_id,
            recipient_user_id,
            conversation: Some(Conversation {
                id: conversation_id,
                origin: Origin { kind: "service" },
            }),
            pricing: Some(Pricing {
                billable: true,
                pricing_model: "PMP",
                category: "service",
            }),
            errors: None,
        }
    }
}

/// What a batched body groups per inbox: its rendered contacts (deduplicated) and its
/// messages or statuses, in time order.
pub(crate) struct EntryParts<'a> {
    pub(crate) inbox: u8,
    pub(crate) contacts: Vec<&'a str>,
    pub(crate) items: Vec<&'a str>,
}

/// Writes one webhook POST body (and its newline). `statuses` says which array the
/// fragments go to; Meta never mixes messages and statuses in one `value`.
pub(crate) fn write_body(buf: &mut Vec<u8>, entries: &[EntryParts<'_>], statuses: bool) {
    buf.extend_from_slice(b"{\"object\":\"whatsapp_business_account\",\"entry\":[");
    for (i, e) in entries.iter().enumerate() {
        let inbox = &WA_INBOXES[usize::from(e.inbox) % WA_INBOXES.len()];
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"id\":\"");
        buf.extend_from_slice(inbox.waba_id.as_bytes());
        buf.extend_from_slice(b"\",\"changes\":[{\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{\"display_phone_number\":\"");
        buf.extend_from_slice(inbox.display_phone_number.as_bytes());
        buf.extend_from_slice(b"\",\"phone_number_id\":\"");
        buf.extend_from_slice(inbox.phone_number_id.as_bytes());
        buf.extend_from_slice(b"\"},");
        if !statuses {
            buf.extend_from_slice(b"\"contacts\":[");
            join(buf, &e.contacts);
            buf.extend_from_slice(b"],\"messages\":[");
        } else {
            buf.extend_from_slice(b"\"statuses\":[");
        }
        join(buf, &e.items);
        buf.extend_from_slice(b"]}}]}");
    }
    buf.extend_from_slice(b"]}\n");
}

fn join(buf: &mut Vec<u8>, parts: &[&str]) {
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(p.as_bytes());
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding; wamids and media hashes are written in it.
pub(crate) fn base64(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A wamid shaped like Meta's: base64 of a small protobuf-like record naming the
/// customer and a unique 20-hex-digit key.
pub(crate) fn wamid(customer: &str, unique: u64, salt: u64) -> String {
    let key = format!(
        "{:016X}{:04X}",
        super::rng::mix(unique, salt),
        unique & 0xFFFF
    );
    let mut raw = Vec::with_capacity(9 + customer.len() + key.len());
    raw.push(0x1C);
    raw.push(0x18);
    raw.push(customer.len().min(255) as u8);
    raw.extend_from_slice(customer.as_bytes());
    raw.extend_from_slice(&[0x15, 0x02, 0x00, 0x12, 0x18, 0x14]);
    raw.extend_from_slice(key.as_bytes());
    format!("wamid.{}", base64(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn body_is_valid_json() {
        let msg = Message {
            text: Some(Text { body: "oi \"x\"" }),
            ..Message::new(
                Some("5511987654321"),
                "BR.1",
                "wamid.A",
                "1762084800",
                "text",
            )
        };
        let m = serde_json::to_string(&msg).expect("renders");
        let c = serde_json::to_string(&Contact {
            profile: Profile { name: "Ana" },
            wa_id: Some("5511987654321"),
            user_id: "BR.1",
        })
        .expect("renders");
        let mut buf = Vec::new();
        write_body(
            &mut buf,
            &[
                EntryParts {
                    inbox: 0,
                    contacts: vec![&c],
                    items: vec![&m, &m],
                },
                EntryParts {
                    inbox: 1,
                    contacts: vec![&c],
                    items: vec![&m],
                },
            ],
            false,
        );
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        assert_eq!(
            v["entry"][1]["changes"][0]["value"]["metadata"]["phone_number_id"],
            "104729381002"
        );
        assert_eq!(
            v["entry"][0]["changes"][0]["value"]["messages"][1]["text"]["body"],
            "oi \"x\""
        );
        assert!(buf.ends_with(b"}\n"));
        let s = Status::new("wamid.A", "failed", "1", None, "BR.1", "ab");
        let v: serde_json::Value = serde_json::to_value(&s).expect("json");
        assert!(v.get("conversation").is_none());
        assert_eq!(v["errors"][0]["code"], 131047);
    }
}
