//! Notifications: the email text (pure) and the mailer that delivers it.

pub mod mailer;
pub mod message;
mod relay;
