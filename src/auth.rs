//! Who may call what: bearer tokens with roles, and the webhook signatures.
//!
//! Tokens come from `SUPPORTLAKE_TOKENS` (or the file named by `SUPPORTLAKE_TOKENS_FILE`) as
//! `role:TOKEN` items separated by commas or newlines; a role may have several tokens.
//! `admin` may do everything, `read` reads, `ingest` posts events. Tokens are compared in
//! constant time and never logged.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Ingest,
    Read,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "ingest" => Some(Role::Ingest),
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether a caller holding `self` may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token item {0}: expected role:TOKEN with role ingest, read or admin")]
    Syntax(usize),
    #[error("token item {0}: a token must have at least 16 characters")]
    TooShort(usize),
}

/// The configured tokens. `Debug` shows roles only.
#[derive(Clone, Default)]
pub struct Tokens {
    items: Vec<(Role, Vec<u8>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roles: Vec<Role> = self.items.iter().map(|(r, _)| *r).collect();
        f.debug_struct("Tokens").field("roles", &roles).finish()
    }
}

impl Tokens {
    pub fn parse(text: &str) -> Result<Tokens, TokenError> {
        let mut items = Vec::new();
        for (i, item) in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let (role, token) = item.split_once(':').ok_or(TokenError::Syntax(i + 1))?;
            let role = Role::parse(role.trim()).ok_or(TokenError::Syntax(i + 1))?;
            let token = token.trim();
            if token.chars().count() < 16 {
                return Err(TokenError::TooShort(i + 1));
            }
            items.push((role, token.as_bytes().to_vec()));
        }
        Ok(Tokens { items })
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Which configured token was presented — its 1-based position in the list, a label
    /// that can be logged and audited without the token — compared in constant time.
    pub fn position_of(&self, presented: &[u8]) -> Option<usize> {
        let mut found = None;
        for (i, (_, token)) in self.items.iter().enumerate() {
            if bool::from(token.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(i + 1);
            }
        }
        found
    }

    /// The role of a presented token, comparing against every configured token in constant
    /// time (no early exit on a match).
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let mut found: Option<Role> = None;
        for (role, token) in &self.items {
            if bool::from(token.as_slice().ct_eq(presented)) {
                found = Some(found.map_or(*role, |r| r.max(*role)));
            }
        }
        found
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac_ok(secret: &[u8], parts: &[&[u8]], expected_hex: &str) -> bool {
    let Ok(expected) = hex::decode(expected_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// WhatsApp Cloud API: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`.
pub fn whatsapp_signature_ok(app_secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    header
        .and_then(|h| h.strip_prefix("sha256="))
        .is_some_and(|sig| hmac_ok(app_secret, &[body], sig))
}

/// Why a Chatwoot delivery was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ChatwootAuth {
    Ok,
    Missing,
    BadSignature,
    Stale,
}

/// Chatwoot: `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`
/// with `X-Chatwoot-Timestamp` (Unix seconds) within five minutes of `now`. Versions that do
/// not sign are authenticated by `?token=<secret>` in the webhook URL instead.
pub fn chatwoot_auth(
    secret: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    url_token: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> ChatwootAuth {
    match (signature, timestamp) {
        (Some(sig), Some(ts)) => {
            let Some(sig) = sig.strip_prefix("sha256=") else {
                return ChatwootAuth::BadSignature;
            };
            if !hmac_ok(secret, &[ts.trim().as_bytes(), b".", body], sig) {
                return ChatwootAuth::BadSignature;
            }
            match ts.trim().parse::<i64>() {
                Ok(t) if (now_unix - t).abs() <= 300 => ChatwootAuth::Ok,
                _ => ChatwootAuth::Stale,
            }
        }
        _ => match url_token {
            Some(t) if bool::from(t.as_bytes().ct_eq(secret)) => ChatwootAuth::Ok,
            Some(_) => ChatwootAuth::BadSignature,
            None => ChatwootAuth::Missing,
        },
    }
}

/// Signs like Chatwoot does (for tests and for replaying captured deliveries).
pub fn sign_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_match_by_role() {
        let t =
            Tokens::parse("read:aaaaaaaaaaaaaaaa, ingest:bbbbbbbbbbbbbbbb\nadmin:cccccccccccccccc")
                .unwrap();
        assert_eq!(t.role_of(b"aaaaaaaaaaaaaaaa"), Some(Role::Read));
        assert_eq!(t.role_of(b"bbbbbbbbbbbbbbbb"), Some(Role::Ingest));
        assert_eq!(t.role_of(b"cccccccccccccccc"), Some(Role::Admin));
        assert_eq!(t.role_of(b"aaaaaaaaaaaaaaa"), None);
        assert!(!format!("{t:?}").contains("aaaa"));
        assert_eq!(
            Tokens::parse("reader:aaaaaaaaaaaaaaaa").unwrap_err(),
            TokenError::Syntax(1)
        );
        assert_eq!(
            Tokens::parse("read:short").unwrap_err(),
            TokenError::TooShort(1)
        );
        assert!(Role::Admin.allows(Role::Read) && !Role::Read.allows(Role::Ingest));
    }

    #[test]
    fn whatsapp_signature_checks_the_raw_bytes() {
        let body = "{\"text\":\"olá 👋\"}".as_bytes();
        let sig = format!("sha256={}", sign_hex(b"s3cret", &[body]));
        assert!(whatsapp_signature_ok(b"s3cret", Some(&sig), body));
        assert!(!whatsapp_signature_ok(b"other", Some(&sig), body));
        assert!(!whatsapp_signature_ok(
            b"s3cret",
            Some(&sig),
            b"{\"text\":\"ola\"}"
        ));
        assert!(!whatsapp_signature_ok(b"s3cret", None, body));
        assert!(!whatsapp_signature_ok(b"s3cret", Some("sha256=zz"), body));
    }

    #[test]
    fn chatwoot_signature_window_and_url_token() {
        let body = b"{}";
        let sig = format!("sha256={}", sign_hex(b"k", &[b"1000", b".", body]));
        assert_eq!(
            chatwoot_auth(b"k", Some(&sig), Some("1000"), None, body, 1200),
            ChatwootAuth::Ok
        );
        assert_eq!(
            chatwoot_auth(b"k", Some(&sig), Some("1000"), None, body, 1301),
            ChatwootAuth::Stale
        );
        assert_eq!(
            chatwoot_auth(b"k", Some(&sig), Some("1001"), None, body, 1200),
            ChatwootAuth::BadSignature
        );
        assert_eq!(
            chatwoot_auth(b"k", None, None, Some("k"), body, 0),
            ChatwootAuth::Ok
        );
        assert_eq!(
            chatwoot_auth(b"k", None, None, Some("x"), body, 0),
            ChatwootAuth::BadSignature
        );
        assert_eq!(
            chatwoot_auth(b"k", None, None, None, body, 0),
            ChatwootAuth::Missing
        );
    }
}
