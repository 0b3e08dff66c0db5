//! The HTTP probe: one `GET` of the health URL, turned into an [`Outcome`].
//!
//! A failed probe is a value, not an error: every way the endpoint can misbehave — refused,
//! reset, silent, stalled, oversized, redirecting in circles, bad TLS, wrong content type,
//! malformed body, unresolvable host — maps to a typed [`Reason`] whose text is logged and
//! carried into the email. Nothing here may panic or outlive the deadline: the probing thread
//! drives every probe in flight.
//!
//! - `engine.rs`: the [`engine::Engine`], many probes in flight on one thread (non-blocking
//!   sockets, one `epoll`, TLS and proxies), and the mapping of network errors to reasons;
//! - `response.rs`: the pure reading of one HTTP/1.1 response, with its caps;
//! - `reason.rs`: [`Reason`], its texts and metric kinds, and which reasons blind a region;
//! - `http.rs`: [`HttpProber`], one probe as one blocking call (the `check` command, tests);
//! - `verdict.rs`: the pure judging of a 200's `Content-Type` and body, and of a healthy
//!   answer's time against the target's `slow` limit ([`speed_verdict`]).
//!
//! The exchange is judged in order: the exchange itself, then the status code, the
//! `Content-Type`, the body size and completeness, and finally the body ([`verdict`]).

pub mod engine;
mod http;
mod reason;
mod response;
mod verdict;

pub use http::HttpProber;
pub use reason::{Phase, Reason};
pub use verdict::{content_type_verdict, speed_verdict, verdict};

use std::time::Duration;

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200 with a JSON body whose `status` is exactly `"OK"`.
    Healthy { latency: Duration },
    /// Anything else, with why.
    Failed { reason: Reason, latency: Duration },
    /// The proxy of the probing region itself failed (down, silent, refused our credentials,
    /// closed without answering): this says nothing about the API, so it never counts as a
    /// failure. Its reason is one whose [`Reason::blinds`] holds.
    Blind { reason: Reason, latency: Duration },
}

impl Outcome {
    /// Whether the probe found the target healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Outcome::Healthy { .. })
    }

    /// Why the probe failed or saw nothing; `None` when healthy.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Outcome::Healthy { .. } => None,
            Outcome::Failed { reason, .. } | Outcome::Blind { reason, .. } => Some(reason),
        }
    }

    /// Whether the probe could not look at the API at all (its region's proxy failed).
    pub fn is_blind(&self) -> bool {
        matches!(self, Outcome::Blind { .. })
    }

    /// How long the probe took, failed or not (a timeout reads as the deadline).
    pub fn latency(&self) -> Duration {
        match self {
            Outcome::Healthy { latency }
            | Outcome::Failed { latency, .. }
            | Outcome::Blind { latency, .. } => *latency,
        }
    }
}

/// The largest health body read; a hostile or broken endpoint must not exhaust memory.
pub const BODY_CAP: usize = 64 * 1024;

/// Something that can probe a target. The monitor loop depends on this, not on HTTP, so its
/// tests can script outcomes.
pub trait Prober: Send + Sync {
    /// Probes `url` once, through the HTTP proxy `proxy` when given (`http://[user:pass@]host:port`,
    /// credentials percent-encoded, tunnelled with CONNECT). Never panics and returns within
    /// the prober's deadline.
    fn probe(&self, url: &str, proxy: Option<&str>) -> Outcome;
}
