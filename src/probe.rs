//! The HTTP probe: one `GET` of the health URL, turned into an [`Outcome`].
//!
//! A failed probe is a value, not an error: every way the endpoint can misbehave maps to a
//! short human reason that is logged and carried into the email.

use std::time::Duration;

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200 with a JSON body whose `status` is exactly `"OK"`.
    Healthy { latency: Duration },
    /// Anything else, with why.
    Failed { reason: String, latency: Duration },
}

impl Outcome {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Outcome::Healthy { .. })
    }

    /// Why the probe failed; `None` when healthy.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Healthy { .. } => None,
            Outcome::Failed { reason, .. } => Some(reason),
        }
    }

    pub fn latency(&self) -> Duration {
        match self {
            Outcome::Healthy { latency } | Outcome::Failed { latency, .. } => *latency,
        }
    }
}
