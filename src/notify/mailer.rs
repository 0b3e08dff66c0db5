//! Delivering composed emails: over SMTP with `lettre`'s blocking transport, or only into the
//! log when no server or recipient is configured.
//!
//! `lettre` rather than the design card's `mail-send`: mail-send is async-only (tokio), and the
//! monitor's first rule is zero async. Sending is bounded by [`SMTP_TIMEOUT`] so a dead mail
//! server can delay the next probe by at most that much.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::SmtpTransport;
use lettre::Transport;

use crate::config::SmtpSettings;
use crate::notify::message::Email;
use crate::redact;

/// The longest one SMTP conversation may take (connect, TLS, auth, data).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Something that delivers [`Email`]s. `Ok` means the message was accepted for delivery; an
/// `Err` leaves it undelivered (the caller decides what to do with it).
pub trait Mailer: Send {
    /// Delivers `email` to `to` (addresses already validated by the configuration).
    fn send(&mut self, email: &Email, to: &[&str]) -> Result<(), MailError>;

    /// How it delivers, for the log: `smtp` or `log`.
    fn channel(&self) -> &'static str;
}

/// A delivery that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail settings: {0}")]
    Settings(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("SMTP delivery via {server} failed: {reason}")]
    Smtp { server: String, reason: String },
}

/// Delivers through an SMTP server.
pub struct SmtpMailer {
    transport: SmtpTransport,
    from: Mailbox,
    /// The server URL without its password, for errors.
    server: String,
}

impl SmtpMailer {
    /// Builds the transport; nothing is sent or connected yet.
    pub fn new(settings: &SmtpSettings, timeout: Duration) -> Result<Self, MailError> {
        let server = redact::url(&settings.url);
        let transport = SmtpTransport::from_url(&settings.url)
            .map_err(|e| MailError::Settings(format!("{server}: {e}")))?
            .timeout(Some(timeout))
            .build();
        let mailbox = |text: &str| {
            text.parse::<Mailbox>().map_err(|e| MailError::Settings(format!("{text:?}: {e}")))
        };
        Ok(SmtpMailer { transport, from: mailbox(&settings.from)?, server })
    }
}

impl Mailer for SmtpMailer {
    fn send(&mut self, email: &Email, to: &[&str]) -> Result<(), MailError> {
        if to.is_empty() {
            // A target/region with no recipient at all: say so rather than retry forever.
            return LogMailer.send(email, to);
        }
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            .user_agent(concat!("api-monitor/", env!("CARGO_PKG_VERSION")).to_string());
        for address in to {
            let mailbox = address
                .parse::<Mailbox>()
                .map_err(|e| MailError::Build(format!("{address:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
            .map_err(|e| MailError::Build(e.to_string()))?;
        self.transport
            .send(&message)
            .map(drop)
            .map_err(|e| MailError::Smtp { server: self.server.clone(), reason: e.to_string() })
    }

    fn channel(&self) -> &'static str {
        "smtp"
    }
}

/// "Delivers" into the log, in full, so a monitor without mail set-up still tells someone.
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send(&mut self, email: &Email, _to: &[&str]) -> Result<(), MailError> {
        log::warn!(
            "notification not mailed (no SMTP server or no recipient) subject={:?}\n{}",
            email.subject,
            email.text.trim_end()
        );
        Ok(())
    }

    fn channel(&self) -> &'static str {
        "log"
    }
}
