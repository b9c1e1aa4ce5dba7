//! Pseudonymization of customer identities (LGPD art. 6 III, data minimization).
//!
//! A **customer key** is `hex(HMAC-SHA256(key, identity))` where *identity* is the customer's
//! phone number in E.164 form (`+5511987654321`) or, when the source has no phone, the
//! source's contact id (a WhatsApp business-scoped user id, a Chatwoot contact id). The same
//! identity always yields the same key; without the secret key nobody can go back from the
//! key to the number. The secret itself is only ever held in memory: it is never written to
//! the lake, to logs or to error messages.
//!
//! Phone numbers arrive in many notations, so they are normalized first (see
//! [`normalize_identity`]): separators are dropped, an international `00` prefix becomes `+`,
//! and a Brazilian mobile number written without its ninth digit (as WhatsApp still reports
//! numbers registered before 2016) gets it back, so `551187654321`, `+55 11 98765-4321` and
//! `+5511987654321` are one customer.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The environment variable that holds the secret key.
pub const KEY_ENV: &str = "SUPPORTLAKE_PSEUDONYM_KEY";
/// The environment variable that names a file holding the secret key.
pub const KEY_FILE_ENV: &str = "SUPPORTLAKE_PSEUDONYM_KEY_FILE";
/// Shortest accepted key, in bytes. Shorter keys are guessable by brute force over the
/// (small) space of phone numbers.
pub const MIN_KEY_BYTES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "no pseudonymization key: set {KEY_ENV} (or {KEY_FILE_ENV} to a file holding it). \
         Customer phone numbers are replaced by an HMAC under this key before anything is \
         stored; keep the key secret and stable (changing it splits every customer's \
         history). Make one with `supportlake keygen`"
    )]
    Missing,
    #[error(
        "the pseudonymization key is {0} bytes long; use at least {MIN_KEY_BYTES} (`supportlake keygen` makes a 64-character one)"
    )]
    TooShort(usize),
    #[error("cannot read the pseudonymization key file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The secret key. `Debug` never shows it.
#[derive(Clone)]
pub struct PseudonymKey(Vec<u8>);

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PseudonymKey(<{} bytes, redacted>)", self.0.len())
    }
}

impl PseudonymKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(KeyError::Missing);
        }
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(PseudonymKey(bytes))
    }

    /// Reads the key from a value (as of `SUPPORTLAKE_PSEUDONYM_KEY`) or a file path (as of
    /// `SUPPORTLAKE_PSEUDONYM_KEY_FILE`); the value wins when both are given. Surrounding
    /// whitespace (a trailing newline in a file) is not part of the key.
    pub fn from_sources(value: Option<&str>, file: Option<&str>) -> Result<Self, KeyError> {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            return PseudonymKey::new(v.trim().as_bytes().to_vec());
        }
        if let Some(path) = file.filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(path).map_err(|e| KeyError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            return PseudonymKey::new(text.trim().as_bytes().to_vec());
        }
        Err(KeyError::Missing)
    }
}

/// An identity after normalization: what the HMAC is computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// E.164, with the leading `+`.
    Phone(String),
    /// A source's own contact id, kept as given (trimmed).
    ContactId(String),
}

impl Identity {
    pub fn as_str(&self) -> &str {
        match self {
            Identity::Phone(s) | Identity::ContactId(s) => s,
        }
    }
}

/// Normalizes a phone number or contact id. Returns `None` for an empty value.
///
/// A value is a phone number when it holds only digits, an optional leading `+` and the
/// separators people type (space, `-`, `.`, `(`, `)`), with 8 to 15 digits (the E.164
/// maximum). Numbers are taken to include their country code, as WhatsApp and every
/// contact-center platform report them. Anything else is a contact id.
pub fn normalize_identity(raw: &str) -> Option<Identity> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let (plus, rest) = match raw.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, raw),
    };
    let phone_like = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')'));
    if phone_like {
        let mut digits: String = rest.chars().filter(|c| c.is_ascii_digit()).collect();
        if !plus && digits.starts_with("00") {
            digits.drain(..2);
        }
        if (8..=15).contains(&digits.len()) {
            // Brazil: mobile numbers gained a ninth digit (a leading 9) between 2012 and
            // 2016. WhatsApp keeps reporting older registrations without it: 55 + area code
            // (2 digits) + 8 digits starting with 6–9 is a mobile number missing its 9.
            if digits.len() == 12
                && digits.starts_with("55")
                && matches!(digits.as_bytes()[4], b'6'..=b'9')
            {
                digits.insert(4, '9');
            }
            return Some(Identity::Phone(format!("+{digits}")));
        }
    }
    Some(Identity::ContactId(raw.to_owned()))
}

/// Computes customer keys. Cheap to clone; each clone has its own cache (customers write many
/// messages, and an HMAC costs more than a lookup).
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
    /// raw identity → hex key, stored inline to keep each entry small.
    cache: HashMap<Box<str>, [u8; 64], twox_hash::xxhash64::State>,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer(<key redacted>)")
    }
}

/// Bounds the cache; it is cleared when full. A customer's events arrive close together, so a
/// small cache catches nearly every repeat while keeping ingest memory flat.
const CACHE_LIMIT: usize = 32_768;

impl Pseudonymizer {
    pub fn new(key: &PseudonymKey) -> Self {
        // HMAC accepts keys of any length; the error branch cannot happen.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // A random seed per process keeps crafted inputs from colliding in the cache.
        let seed: u64 = rand::random();
        Pseudonymizer {
            mac,
            cache: HashMap::with_hasher(twox_hash::xxhash64::State::with_seed(seed)),
        }
    }

    /// The customer key of a raw phone number or contact id (normalized first), or `None`
    /// for an empty value.
    pub fn customer_key(&mut self, raw: &str) -> Option<&str> {
        if !self.cache.contains_key(raw) {
            let identity = normalize_identity(raw)?;
            let mut hex = [0u8; 64];
            hex.copy_from_slice(self.key_of(&identity).as_bytes());
            if self.cache.len() >= CACHE_LIMIT {
                self.cache.clear();
            }
            self.cache.insert(raw.into(), hex);
        }
        self.cache
            .get(raw)
            .and_then(|hex| std::str::from_utf8(hex).ok())
    }

    /// The customer key of an already normalized identity.
    pub fn key_of(&self, identity: &Identity) -> String {
        let mut mac = self.mac.clone();
        mac.update(identity.as_str().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A fresh random key, hex-encoded (64 characters), for `supportlake keygen` and the demo.
pub fn generate_key_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(s: &str) -> Option<Identity> {
        Some(Identity::Phone(s.to_owned()))
    }

    #[test]
    fn notations_of_one_number_normalize_alike() {
        for raw in [
            "+5511987654321",
            "5511987654321",
            "+55 11 98765-4321",
            "+55 (11) 98765-4321",
            "005511987654321",
            "551187654321", // WhatsApp's pre-2016 form, without the ninth digit
            " +55.11.98765.4321 ",
        ] {
            assert_eq!(normalize_identity(raw), phone("+5511987654321"), "{raw}");
        }
    }

    #[test]
    fn brazilian_landlines_and_other_countries_keep_their_digits() {
        // Landline (starts with 3): no ninth digit to restore.
        assert_eq!(normalize_identity("551130001000"), phone("+551130001000"));
        assert_eq!(normalize_identity("+1 415 555 0100"), phone("+14155550100"));
        assert_eq!(normalize_identity("+351912345678"), phone("+351912345678"));
    }

    #[test]
    fn non_phones_are_contact_ids() {
        let id = |s: &str| Some(Identity::ContactId(s.to_owned()));
        assert_eq!(
            normalize_identity("BR.1349120865530274191"),
            id("BR.1349120865530274191")
        );
        assert_eq!(
            normalize_identity("chatwoot-contact:42"),
            id("chatwoot-contact:42")
        );
        assert_eq!(normalize_identity("12345"), id("12345")); // too short for a phone
        assert_eq!(normalize_identity("   "), None);
    }

    #[test]
    fn keys_are_stable_keyed_and_hide_the_number() {
        let k1 = PseudonymKey::new(b"0123456789abcdef-test".to_vec()).unwrap();
        let k2 = PseudonymKey::new(b"another-key-of-16-bytes".to_vec()).unwrap();
        let mut p1 = Pseudonymizer::new(&k1);
        let mut p2 = Pseudonymizer::new(&k2);
        let a = p1.customer_key("+55 11 98765-4321").unwrap().to_owned();
        let b = p1.customer_key("551187654321").unwrap().to_owned();
        let c = p2.customer_key("+5511987654321").unwrap().to_owned();
        assert_eq!(a, b);
        assert_ne!(a, c, "a different secret gives different keys");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("987654321"));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 1: key = 20 bytes of 0x0b, data = "Hi There".
        let key = PseudonymKey::new(vec![0x0b; 20]).unwrap();
        let p = Pseudonymizer::new(&key);
        assert_eq!(
            p.key_of(&Identity::ContactId("Hi There".into())),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn short_or_missing_keys_are_refused_without_echoing_them() {
        assert_eq!(
            PseudonymKey::new(b"short".to_vec()).unwrap_err(),
            KeyError::TooShort(5)
        );
        assert_eq!(
            PseudonymKey::from_sources(None, None).unwrap_err(),
            KeyError::Missing
        );
        assert_eq!(
            PseudonymKey::from_sources(Some("  "), None).unwrap_err(),
            KeyError::Missing
        );
        let msg = PseudonymKey::new(b"short".to_vec())
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("short"), "{msg}");
        let dbg = format!(
            "{:?}",
            PseudonymKey::new(b"0123456789abcdef".to_vec()).unwrap()
        );
        assert!(!dbg.contains("0123"), "{dbg}");
    }
}
