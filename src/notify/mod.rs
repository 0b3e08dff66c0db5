//! Notifications: the email text (pure), the outbox decisions (pure) and the mailer that
//! delivers them.

pub mod channel;
pub mod event;
pub mod mailer;
pub mod message;
pub mod outbox;
mod relay;
