//! `testkit`: what the end-to-end tests in `tests/` and the benchmark in `bench/` share.
//!
//! Everything here is blocking `std` code on plain threads, binds loopback only, and waits on
//! events with deadlines rather than sleeping for fixed times:
//!
//! - [`log`]: [`Log`], a list that reader threads append to and callers wait on;
//! - [`process`]: [`Process`], a child whose stderr lines are collected (and optionally echoed or
//!   written to a file), with `wait_for_line`, signals and a timed stop;
//! - [`bins`]: where cargo put the workspace's binaries;
//! - [`fake_api`]: [`FakeApi`], the `fake-api` binary with its requests and mode changes parsed;
//! - [`loopback`]: in-process servers for load: [`HealthServer`] (answers every path healthy and
//!   records each hit) and [`BlackHole`] (accepts and never answers);
//! - [`smtp`]: [`SmtpServer`], an in-process SMTP server collecting [`Mail`] (and refusing at a
//!   [`Stage`] or per recipient on demand);
//! - [`hostile`]: [`HostileSmtp`], raw TCP "SMTP servers" that misbehave ([`Hostility`]: tarpit,
//!   trickle, silence, hang after DATA);
//! - [`net`]: [`reserve_port`], a [`Forwarder`] that can be cut, a [`ConnectProxy`];
//! - [`receiver`]: [`Receiver`], an HTTP endpoint for webhooks that records each request and
//!   answers with a status, or hangs, as told;
//! - [`procfs`]: CPU clock, RSS, threads, file descriptors and smaps of a process by pid.
//!
//! Errors are messages for a person (`Result<T, String>`): no caller matches on them. The
//! `panic`king variants (`start`, `wait_until`, …) are for tests, where a panic is the failure.
#![forbid(unsafe_code)]

pub mod bins;
pub mod fake_api;
pub mod hostile;
pub mod log;
pub mod loopback;
pub mod net;
pub mod process;
pub mod procfs;
pub mod receiver;
pub mod smtp;

pub use bins::{bin_dir, binary, temp_dir};
pub use fake_api::{FakeApi, Flip, Hit};
pub use hostile::{HostileSmtp, Hostility};
pub use log::Log;
pub use loopback::{BlackHole, HealthServer, PathHit};
pub use net::{reserve_port, ConnectProxy, Forwarder};
pub use process::{read_lines, Capture, Process};
pub use receiver::{Received, Receiver, Reply};
pub use smtp::{decode_base64, decode_encoded_words, Mail, SmtpServer, Stage};

use std::time::Duration;

/// How long any awaited event may take on a loaded 2-core machine before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Errors of this crate: a sentence for a person.
pub type Result<T> = std::result::Result<T, String>;
