//! Test doubles for api-monitor: a scriptable fake health API (`fake-api`) and a tiny SMTP sink
//! (`mail-sink`), so demos and end-to-end tests can simulate an outage and watch the e-mail
//! arrive without touching a real service.
//!
//! The logic lives here, pure where it can be (modes, scripts, request parsing, message
//! rendering), so it is unit-tested next to the code; the two binaries only wire it to sockets.
//! `fake-api` can also misbehave on purpose — stall, cut or abort a body, flood, redirect in a
//! loop, mislabel or mangle the body, serve an untrusted certificate — so every failure the
//! monitor's probe must survive has a real server to be tested against.
//! Everything is blocking I/O on plain threads: no async runtime anywhere.

#![forbid(unsafe_code)]

pub mod cli;
pub mod control;
pub mod events;
pub mod http;
pub mod mail;
pub mod mode;
pub mod script;
pub mod server;
pub mod tls;
