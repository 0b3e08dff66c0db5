//! api-monitor: watches HTTP health APIs and emails support when one goes down and when it
//! comes back. The binary (`src/main.rs`) is a thin shell around this library so tests can
//! drive every part.
//!
//! Folders by role:
//! - [`config`]: command line, environment and TOML file into one validated [`config::Config`];
//! - [`probe`]: HTTP `GET`s into [`probe::Outcome`]s, many in flight on one thread;
//! - [`runtime`]: the threads — probing (scheduler and probe engine), the state owner, the
//!   recorder, the couriers;
//! - [`store`]: the `state` and `notification` tables in SQLite or MySQL;
//! - [`notify`]: email text and the mailer;
//! - [`web`]: the `--listen` server, metrics and the status page;
//! - [`report`]: `api-monitor report`;
//! - [`cluster`]: several instances on one database (pure decisions so far);
//! - [`crypto`]: the one TLS provider (ring) every TLS client here uses.
//!
//! Pure core: [`detector`], [`history`], [`latency`], [`notify::message`], [`timestamp`], [`duration`], [`cluster`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod detector;
pub mod duration;
pub mod history;
pub mod latency;
pub mod maintenance;
pub mod notify;
pub mod probe;
pub mod redact;
pub mod report;
pub mod runtime;
pub mod store;
pub mod timestamp;
pub mod web;
