//! Field access over borrowed JSON: records are parsed once into structs of raw values, then
//! each field is converted on its own, so an error names the exact field and the rest of the
//! record can still be judged.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Just enough of a record to tell which source sent it.
#[derive(Deserialize)]
pub(crate) struct Probe<'a> {
    #[serde(borrow, default)]
    pub object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub event: Option<&'a RawValue>,
    #[serde(rename = "type", borrow, default)]
    pub type_: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub ts: Option<&'a RawValue>,
}

/// A field that could not be read, before the caller adds the position.
#[derive(Debug)]
pub(crate) struct FieldError {
    pub code: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn wrong_type(expected: &str, raw: &RawValue) -> Self {
        FieldError {
            code: super::codes::WRONG_TYPE,
            reason: format!("expected {expected}, found {}", describe(raw)),
        }
    }

    pub fn missing() -> Self {
        FieldError {
            code: super::codes::MISSING_FIELD,
            reason: "required field is missing".to_owned(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        FieldError {
            code: super::codes::INVALID_VALUE,
            reason: reason.into(),
        }
    }
}

/// Describes a JSON value for an error message, without echoing long or personal content.
pub(crate) fn describe(raw: &RawValue) -> String {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => {
            if text.len() <= 42 {
                format!("the string {text}")
            } else {
                format!("a string of {} bytes", text.len() - 2)
            }
        }
        Some(b'{') => "an object".to_owned(),
        Some(b'[') => "an array".to_owned(),
        Some(b't') | Some(b'f') => format!("the boolean {text}"),
        Some(b'n') => "null".to_owned(),
        _ => format!("the number {text}"),
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// A string field; `null` and absent are `None`.
pub(crate) fn opt_str<'a>(raw: Option<&'a RawValue>) -> Result<Option<Cow<'a, str>>, FieldError> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(FieldError::wrong_type("a string", raw));
    }
    let inner = &text[1..text.len() - 1];
    if !inner.contains('\\') {
        return Ok(Some(Cow::Borrowed(inner)));
    }
    serde_json::from_str::<String>(text)
        .map(|s| Some(Cow::Owned(s)))
        .map_err(|e| FieldError::invalid(e.to_string()))
}

/// A required string field.
pub(crate) fn req_str<'a>(raw: Option<&'a RawValue>) -> Result<Cow<'a, str>, FieldError> {
    opt_str(raw)?.ok_or_else(FieldError::missing)
}

/// An identifier that sources send either as a string or as an integer.
pub(crate) fn opt_id<'a>(raw: Option<&'a RawValue>) -> Result<Option<Cow<'a, str>>, FieldError> {
    let Some(r) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    let text = r.get();
    if text.starts_with('"') {
        return opt_str(raw);
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !text.is_empty() {
        return Ok(Some(Cow::Borrowed(text)));
    }
    Err(FieldError::wrong_type("a string or an integer", r))
}

pub(crate) fn opt_bool(raw: Option<&RawValue>) -> Result<Option<bool>, FieldError> {
    let Some(r) = raw else {
        return Ok(None);
    };
    match r.get() {
        "null" => Ok(None),
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err(FieldError::wrong_type("a boolean", r)),
    }
}

pub(crate) fn opt_i64(raw: Option<&RawValue>) -> Result<Option<i64>, FieldError> {
    let Some(r) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    r.get()
        .parse::<i64>()
        .map(Some)
        .map_err(|_| FieldError::wrong_type("an integer", r))
}

/// A number given as a JSON number or as a string of digits (WhatsApp sends Unix seconds as
/// strings; Chatwoot as numbers, sometimes with a fraction).
pub(crate) fn opt_number(raw: Option<&RawValue>) -> Result<Option<f64>, FieldError> {
    let Some(r) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    let text = r.get();
    let digits = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    // Whole seconds are the common case and parse faster as integers.
    if !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(digits.parse::<u64>().ok().map(|v| v as f64));
    }
    digits
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Some)
        .ok_or_else(|| FieldError::wrong_type("a number", r))
}

/// Parses a nested object into a struct of raw fields.
pub(crate) fn object<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, FieldError> {
    if !raw.get().starts_with('{') {
        return Err(FieldError::wrong_type("an object", raw));
    }
    serde_json::from_str(raw.get()).map_err(|e| FieldError::invalid(e.to_string()))
}

/// Parses a nested array into its raw elements; absent or `null` is empty.
pub(crate) fn array(raw: Option<&RawValue>) -> Result<Vec<&RawValue>, FieldError> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        return Ok(Vec::new());
    };
    if !raw.get().starts_with('[') {
        return Err(FieldError::wrong_type("an array", raw));
    }
    serde_json::from_str(raw.get()).map_err(|e| FieldError::invalid(e.to_string()))
}

/// Keys dropped from free-form `attrs`, because they usually carry personal data or message
/// text (compared case-insensitively).
const PERSONAL_KEYS: [&str; 16] = [
    "text",
    "body",
    "content",
    "message",
    "caption",
    "name",
    "first_name",
    "last_name",
    "full_name",
    "phone",
    "phone_number",
    "email",
    "wa_id",
    "customer",
    "contact",
    "address",
];

/// Writes a JSON object with sorted keys and without personal keys (at any depth), or
/// `None` if nothing is left. Sorted keys make `attrs` byte-stable, so a string match on it
/// (`"private":true`) is reliable and a re-sent event hashes the same.
pub(crate) fn clean_attrs(raw: &RawValue) -> Result<Option<String>, FieldError> {
    if is_null(raw) {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(raw.get()).map_err(|e| FieldError::invalid(e.to_string()))?;
    let serde_json::Value::Object(_) = value else {
        return Err(FieldError::wrong_type("an object", raw));
    };
    let cleaned = scrub(value);
    match &cleaned {
        Sorted::Object(m) if m.is_empty() => Ok(None),
        _ => Ok(Some(
            serde_json::to_string(&cleaned).map_err(|e| FieldError::invalid(e.to_string()))?,
        )),
    }
}

/// A JSON value whose objects are ordered maps, whatever features serde_json was built with.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum Sorted {
    Object(BTreeMap<String, Sorted>),
    Array(Vec<Sorted>),
    Leaf(serde_json::Value),
}

fn scrub(v: serde_json::Value) -> Sorted {
    match v {
        serde_json::Value::Object(m) => Sorted::Object(
            m.into_iter()
                .filter(|(k, _)| {
                    !PERSONAL_KEYS
                        .iter()
                        .any(|p| p.eq_ignore_ascii_case(k.as_str()))
                })
                .map(|(k, v)| (k, scrub(v)))
                .collect(),
        ),
        serde_json::Value::Array(a) => Sorted::Array(a.into_iter().map(scrub).collect()),
        leaf => Sorted::Leaf(leaf),
    }
}

/// Writes a small `attrs` object directly, without building a JSON tree. Callers add keys
/// in sorted order (checked in debug builds), so the output is byte-stable.
pub(crate) struct Attrs {
    out: String,
    #[cfg(debug_assertions)]
    last: String,
}

impl Attrs {
    pub fn new() -> Self {
        Attrs {
            out: String::new(),
            #[cfg(debug_assertions)]
            last: String::new(),
        }
    }

    fn key(&mut self, key: &str) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(self.last.as_str() < key, "attrs keys out of order: {key}");
            self.last = key.to_owned();
        }
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.out.push('"');
            self.out.push_str(value);
            self.out.push('"');
        } else {
            // Serializing a &str into a String cannot fail.
            self.out
                .push_str(&serde_json::to_string(value).unwrap_or_default());
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    pub fn finish(mut self) -> Option<String> {
        if self.out.is_empty() {
            return None;
        }
        self.out.push('}');
        Some(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let r = raw(r#""abc""#);
        assert!(matches!(
            opt_str(Some(&r)).unwrap(),
            Some(Cow::Borrowed("abc"))
        ));
        let r = raw(r#""a\"b\u00e9""#);
        assert_eq!(opt_str(Some(&r)).unwrap().as_deref(), Some("a\"bé"));
        let r = raw("12");
        let e = opt_str(Some(&r)).unwrap_err();
        assert_eq!(e.reason, "expected a string, found the number 12");
    }

    #[test]
    fn ids_take_strings_and_integers_only() {
        assert_eq!(opt_id(Some(&raw("42"))).unwrap().as_deref(), Some("42"));
        assert_eq!(
            opt_id(Some(&raw(r#""c-1""#))).unwrap().as_deref(),
            Some("c-1")
        );
        assert!(opt_id(Some(&raw("1.5"))).is_err());
        assert!(opt_id(Some(&raw("{}"))).is_err());
        assert_eq!(opt_id(Some(&raw("null"))).unwrap(), None);
    }

    #[test]
    fn attrs_are_sorted_and_scrubbed() {
        let r = raw(r#"{"z":1,"Name":"Ana","a":{"phone":"+55","k":[{"email":"x","v":2}]}}"#);
        assert_eq!(
            clean_attrs(&r).unwrap().as_deref(),
            Some(r#"{"a":{"k":[{"v":2}]},"z":1}"#)
        );
        assert_eq!(clean_attrs(&raw(r#"{"text":"hi"}"#)).unwrap(), None);
        assert!(clean_attrs(&raw("[1]")).is_err());
    }
}
