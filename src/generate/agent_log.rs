//! Lines of the agent event log (docs/agent-log.md).
//!
//! A line is rendered when the simulation emits it, but its `id` is given only when it
//! is written, so that ids rise with the file order. The rendered text therefore starts
//! at `"ts"` and the writer prepends `{"id":"ev-N",`.

use serde::Serialize;

#[derive(Serialize)]
pub(crate) struct Attrs<'a> {
    pub(crate) tags: &'a [&'a str],
}

/// One agent-log line minus its `id`. Field order is the order of the format's table.
#[derive(Serialize)]
pub(crate) struct Line<'a> {
    pub(crate) ts: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) conversation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) customer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) agent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) team: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) inbox: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) priority: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) private: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) score: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attrs: Option<Attrs<'a>>,
}

impl<'a> Line<'a> {
    pub(crate) fn new(ts: &'a str, kind: &'static str) -> Self {
        Self {
            ts,
            kind,
            conversation_id: None,
            customer: None,
            agent_id: None,
            team: None,
            channel: None,
            inbox: None,
            priority: None,
            author: None,
            private: None,
            message_id: None,
            score: None,
            status: None,
            reason: None,
            attrs: None,
        }
    }
}

/// The JSON object without its opening brace's `id` member (see the module note).
pub(crate) fn render(line: &Line<'_>) -> Result<String, serde_json::Error> {
    serde_json::to_string(line)
}

/// Writes `{"id":"ev-N",` followed by the rendered line minus its opening brace.
pub(crate) fn write_with_id(buf: &mut Vec<u8>, id: u64, rendered: &str) {
    buf.extend_from_slice(b"{\"id\":\"ev-");
    buf.extend_from_slice(id.to_string().as_bytes());
    buf.extend_from_slice(b"\",");
    buf.extend_from_slice(rendered.strip_prefix('{').unwrap_or(rendered).as_bytes());
    buf.push(b'\n');
}

/// Phone-number notations an agent desktop might log for the same customer.
pub(crate) fn phone_notation(digits: &str, style: u8) -> String {
    // digits: "55" + DDD (2) + 9-digit mobile number, 13 characters.
    if digits.len() != 13 {
        return format!("+{digits}");
    }
    let (cc, rest) = digits.split_at(2);
    let (ddd, num) = rest.split_at(2);
    let (a, b) = num.split_at(5);
    match style {
        0 => format!("+{digits}"),
        1 => digits.to_string(),
        2 => format!("+{cc} ({ddd}) {a}-{b}"),
        _ => format!("+{cc} {ddd} {a}-{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_goes_first() {
        let mut l = Line::new("2026-11-02T12:00:00Z", "conversation.opened");
        l.conversation_id = Some("c-000042");
        let r = render(&l).expect("renders");
        let mut buf = Vec::new();
        write_with_id(&mut buf, 7, &r);
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            "{\"id\":\"ev-7\",\"ts\":\"2026-11-02T12:00:00Z\",\"type\":\"conversation.opened\",\"conversation_id\":\"c-000042\"}\n"
        );
    }

    #[test]
    fn notations() {
        assert_eq!(phone_notation("5511987654321", 0), "+5511987654321");
        assert_eq!(phone_notation("5511987654321", 1), "5511987654321");
        assert_eq!(phone_notation("5511987654321", 2), "+55 (11) 98765-4321");
        assert_eq!(phone_notation("5511987654321", 3), "+55 11 98765-4321");
    }
}
