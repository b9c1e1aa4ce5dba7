//! Chatwoot webhook bodies, in the shapes Chatwoot posts them.

use serde::Serialize;

use super::model::{
    CW_ACCOUNT_ID, CW_ACCOUNT_NAME, CW_BOT_ID, CW_BOT_NAME, CW_CHANNEL, CW_INBOX_ID, CW_INBOX_NAME,
};

#[derive(Serialize)]
pub(crate) struct Empty {}

#[derive(Serialize)]
pub(crate) struct ContactRef<'a> {
    pub(crate) id: u64,
    pub(crate) name: &'a str,
    pub(crate) phone_number: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
}

#[derive(Serialize)]
pub(crate) struct AssigneeRef<'a> {
    pub(crate) id: u32,
    pub(crate) name: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
}

#[derive(Serialize)]
pub(crate) struct TeamRef {
    pub(crate) id: u32,
    pub(crate) name: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Meta<'a> {
    pub(crate) sender: ContactRef<'a>,
    pub(crate) assignee: Option<AssigneeRef<'a>>,
    pub(crate) team: Option<TeamRef>,
}

#[derive(Serialize)]
pub(crate) struct ContactInbox<'a> {
    pub(crate) source_id: &'a str,
}

#[derive(Serialize)]
pub(crate) struct PrevCur<T> {
    pub(crate) previous_value: T,
    pub(crate) current_value: T,
}

/// One element of `changed_attributes`: an object with a single attribute key.
#[derive(Serialize, Default)]
pub(crate) struct Change<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<PrevCur<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) assignee_id: Option<PrevCur<Option<u32>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) team_id: Option<PrevCur<Option<u32>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) updated_at: Option<PrevCur<&'a str>>,
}

/// The conversation object. As the body of a conversation event it also carries
/// `event` (first) and `changed_attributes` (last); inside a message event it carries
/// neither.
#[derive(Serialize)]
pub(crate) struct Conversation<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<&'static str>,
    pub(crate) id: u32,
    pub(crate) inbox_id: u32,
    pub(crate) channel: &'static str,
    pub(crate) status: &'static str,
    pub(crate) priority: Option<&'static str>,
    pub(crate) meta: Meta<'a>,
    pub(crate) created_at: i64,
    pub(crate) timestamp: i64,
    pub(crate) updated_at: f64,
    pub(crate) contact_inbox: ContactInbox<'a>,
    pub(crate) messages: [u8; 0],
    pub(crate) labels: [u8; 0],
    pub(crate) unread_count: u32,
    pub(crate) additional_attributes: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) changed_attributes: Option<&'a [Change<'a>]>,
}

/// The fields of a conversation that vary; the rest is fixed for inbox 7.
pub(crate) struct ConvState<'a> {
    pub(crate) display_id: u32,
    pub(crate) status: &'static str,
    pub(crate) priority: Option<&'static str>,
    pub(crate) sender: ContactRef<'a>,
    pub(crate) assignee: Option<AssigneeRef<'a>>,
    pub(crate) team: Option<TeamRef>,
    pub(crate) created_at: i64,
    pub(crate) last_activity: i64,
    pub(crate) updated_at: i64,
    pub(crate) source_id: &'a str,
}

impl<'a> ConvState<'a> {
    pub(crate) fn into_object(
        self,
        event: Option<&'static str>,
        changed: Option<&'a [Change<'a>]>,
    ) -> Conversation<'a> {
        Conversation {
            event,
            id: self.display_id,
            inbox_id: CW_INBOX_ID,
            channel: CW_CHANNEL,
            status: self.status,
            priority: self.priority,
            meta: Meta {
                sender: self.sender,
                assignee: self.assignee,
                team: self.team,
            },
            created_at: self.created_at,
            timestamp: self.last_activity,
            // Whole seconds on purpose: the truth is exact to the second.
            updated_at: self.updated_at as f64,
            contact_inbox: ContactInbox {
                source_id: self.source_id,
            },
            messages: [],
            labels: [],
            unread_count: 0,
            additional_attributes: Empty {},
            changed_attributes: changed,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct UserSender<'a> {
    pub(crate) id: u32,
    pub(crate) name: &'a str,
    pub(crate) email: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
}

#[derive(Serialize)]
pub(crate) struct BotSender {
    pub(crate) id: u32,
    pub(crate) name: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Sender<'a> {
    Contact(ContactRef<'a>),
    User(UserSender<'a>),
    Bot(BotSender),
}

pub(crate) fn bot_sender() -> Sender<'static> {
    Sender::Bot(BotSender {
        id: CW_BOT_ID,
        name: CW_BOT_NAME,
        kind: "agent_bot",
    })
}

#[derive(Serialize)]
pub(crate) struct CsatResponse<'a> {
    pub(crate) rating: u8,
    pub(crate) feedback_message: &'a str,
}

#[derive(Serialize)]
pub(crate) struct SubmittedValues<'a> {
    pub(crate) csat_survey_response: CsatResponse<'a>,
}

#[derive(Serialize)]
pub(crate) struct ContentAttributes<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) submitted_values: Option<SubmittedValues<'a>>,
}

#[derive(Serialize)]
pub(crate) struct InboxRef {
    pub(crate) id: u32,
    pub(crate) name: &'static str,
}

#[derive(Serialize)]
pub(crate) struct AccountRef {
    pub(crate) id: u32,
    pub(crate) name: &'static str,
}

#[derive(Serialize)]
pub(crate) struct MessageEvent<'a> {
    pub(crate) event: &'static str,
    pub(crate) id: u64,
    pub(crate) content: &'a str,
    pub(crate) created_at: &'a str,
    pub(crate) message_type: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) content_attributes: ContentAttributes<'a>,
    pub(crate) private: bool,
    pub(crate) source_id: Option<&'a str>,
    /// `None` for the CSAT survey, which Chatwoot itself sends.
    pub(crate) sender: Option<Sender<'a>>,
    pub(crate) inbox: InboxRef,
    pub(crate) conversation: Conversation<'a>,
    pub(crate) account: AccountRef,
    pub(crate) additional_attributes: Empty,
}

impl<'a> MessageEvent<'a> {
    pub(crate) fn new(
        event: &'static str,
        id: u64,
        content: &'a str,
        created_at: &'a str,
        message_type: &'static str,
        sender: Option<Sender<'a>>,
        conversation: Conversation<'a>,
    ) -> Self {
        Self {
            event,
            id,
            content,
            created_at,
            message_type,
            content_type: "text",
            content_attributes: ContentAttributes {
                submitted_values: None,
            },
            private: false,
            source_id: None,
            sender,
            inbox: InboxRef {
                id: CW_INBOX_ID,
                name: CW_INBOX_NAME,
            },
            conversation,
            account: AccountRef {
                id: CW_ACCOUNT_ID,
                name: CW_ACCOUNT_NAME,
            },
            additional_attributes: Empty {},
        }
    }
}

/// Chatwoot's `contact_inbox.source_id` for the web widget is a UUID.
pub(crate) fn uuid_like(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFF,
        0x8000 | (b >> 48 & 0x3FFF),
        b & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_event_shape() {
        let state = ConvState {
            display_id: 12,
            status: "open",
            priority: None,
            sender: ContactRef {
                id: 5001,
                name: "Ana Souza",
                phone_number: "+5511987654321",
                kind: "contact",
            },
            assignee: None,
            team: Some(TeamRef {
                id: 1,
                name: "billing",
            }),
            created_at: 100,
            last_activity: 150,
            updated_at: 160,
            source_id: "x",
        };
        let changes = [
            Change {
                status: Some(PrevCur {
                    previous_value: "pending",
                    current_value: "open",
                }),
                ..Change::default()
            },
            Change {
                assignee_id: Some(PrevCur {
                    previous_value: None,
                    current_value: Some(101),
                }),
                ..Change::default()
            },
        ];
        let obj = state.into_object(Some("conversation_status_changed"), Some(&changes));
        let s = serde_json::to_string(&obj).expect("renders");
        assert!(s.starts_with("{\"event\":\"conversation_status_changed\",\"id\":12,"));
        assert!(s.contains("\"updated_at\":160.0"));
        assert!(s.contains("\"messages\":[],\"labels\":[]"));
        assert!(s.ends_with("\"changed_attributes\":[{\"status\":{\"previous_value\":\"pending\",\"current_value\":\"open\"}},{\"assignee_id\":{\"previous_value\":null,\"current_value\":101}}]}"));
        let u = uuid_like(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        assert_eq!(u.len(), 36);
    }
}
