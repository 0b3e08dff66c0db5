//! api-monitor: watches an HTTP health API and emails support when it goes down and when it
//! comes back. The binary (`src/main.rs`) is a thin shell around this library so tests can
//! drive every part.
//!
//! Pure core: [`detector`], [`history`], [`message`], [`timestamp`], [`duration`].
//! I/O at the edges: [`probe`], [`store`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod config_file;
pub mod courier;
pub mod detector;
pub mod duration;
pub mod history;
pub mod http_server;
pub mod ledger;
pub mod mailer;
pub mod message;
pub mod metrics;
pub mod monitor;
pub mod probe;
pub mod redact;
pub mod report;
pub mod schedule;
pub mod status_page;
pub mod store;
pub mod timestamp;
