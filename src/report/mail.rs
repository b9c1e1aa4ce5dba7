//! Sending a report by SMTP (lettre).
//!
//! The server comes from `SUPPORTLAKE_SMTP_URL` (or `[smtp] url` in the config):
//! - `smtp://host:port` — plain, no TLS (a local relay, a test server);
//! - `smtp://host?tls=required` — STARTTLS, refusing to go on without it
//!   (`?tls=opportunistic` uses it when offered);
//! - `smtps://user:pass@host` — implicit TLS (port 465 by default) with authentication.
//!
//! User and password may also come from `SUPPORTLAKE_SMTP_USER` / `SUPPORTLAKE_SMTP_PASSWORD`
//! (or their `_FILE` forms) so they stay out of the URL. A send is tried three times, 2 s and
//! then 8 s apart, unless the server refuses for good (a 5xx answer).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tracing::warn;

use super::{Report, ReportError};

/// Where and as whom reports are sent.
#[derive(Clone)]
pub struct SmtpSettings {
    pub url: String,
    pub from: Mailbox,
    pub credentials: Option<(String, String)>,
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password, in the URL or beside it.
        f.debug_struct("SmtpSettings")
            .field("url", &redact(&self.url))
            .field("from", &self.from.to_string())
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl SmtpSettings {
    /// From the URL and sender; credentials and limits at their defaults.
    pub fn new(url: &str, from: &str) -> Result<Self, ReportError> {
        let from: Mailbox = from.parse().map_err(|e| {
            ReportError::Config(format!("sender {from:?} is not an email address: {e}"))
        })?;
        // Check the URL now, so a typo is reported before any report is computed.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| ReportError::Config(format!("SMTP URL {}: {e}", redact(url))))?;
        Ok(SmtpSettings {
            url: url.to_owned(),
            from,
            credentials: None,
            timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_secs(2),
        })
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, ReportError> {
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.url)
            .map_err(|e| ReportError::Config(format!("SMTP URL {}: {e}", redact(&self.url))))?
            .timeout(Some(self.timeout));
        if let Some((user, pass)) = &self.credentials {
            b = b.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        Ok(b.build())
    }
}

/// The email of a report: text and HTML alternatives, the charts inline by Content-ID, the
/// CSV of breached targets attached.
pub fn message(report: &Report, from: &Mailbox, to: &[String]) -> Result<Message, ReportError> {
    if to.is_empty() {
        return Err(ReportError::Config(
            "no recipients: give --to ADDR or recipients in the report's [[reports]] entry".into(),
        ));
    }
    let mut b = Message::builder()
        .from(from.clone())
        .subject(report.subject.clone());
    for addr in to {
        let m: Mailbox = addr.parse().map_err(|e| {
            ReportError::Config(format!("recipient {addr:?} is not an email address: {e}"))
        })?;
        b = b.to(m);
    }
    let png = ContentType::parse("image/png").map_err(|e| ReportError::Mail(e.to_string()))?;
    let csv = ContentType::parse("text/csv; charset=utf-8")
        .map_err(|e| ReportError::Mail(e.to_string()))?;
    let mut related = MultiPart::related().multipart(MultiPart::alternative_plain_html(
        report.text.clone(),
        report.html.clone(),
    ));
    for c in &report.charts {
        related = related
            .singlepart(Attachment::new_inline(c.cid.clone()).body(c.png.clone(), png.clone()));
    }
    let file = format!(
        "sla-breaches-{}-{}.csv",
        report.name,
        report.from.format("%Y%m%d")
    );
    let body: SinglePart = Attachment::new(file).body(report.breached_csv.clone(), csv);
    b.multipart(MultiPart::mixed().multipart(related).singlepart(body))
        .map_err(|e| ReportError::Mail(format!("building the message: {e}")))
}

/// Sends, retrying transient failures.
pub async fn send(settings: &SmtpSettings, message: Message) -> Result<(), ReportError> {
    let transport = settings.transport()?;
    let mut wait = settings.backoff;
    let mut attempt = 1;
    loop {
        match transport.send(message.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_permanent() || attempt >= settings.attempts => {
                return Err(ReportError::Mail(format!(
                    "sending through {} failed after {attempt} attempt(s): {e}",
                    redact(&settings.url)
                )));
            }
            Err(e) => {
                warn!(attempt, error = %e, "SMTP send failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 4;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("smtps://me:s3cret@mail.example.com"),
            "smtps://me:***@mail.example.com"
        );
        assert_eq!(redact("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        let s = SmtpSettings::new("smtps://me:s3cret@mail.example.com", "r@example.com").unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
        assert!(SmtpSettings::new("ftp://x", "r@example.com").is_err());
        assert!(SmtpSettings::new("smtp://x", "not an address").is_err());
    }
}
