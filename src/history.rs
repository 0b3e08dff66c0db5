//! History metrics for the emails (and later the report): uptime %, outage counts, MTBF, MTTR,
//! longest outage — computed purely from the recorded transitions.
//!
//! TODO(helper): implement per the brief.

use std::time::Duration;

use crate::detector::Health;
use crate::timestamp::Timestamp;

/// One recorded transition: from `at` on, the target was `health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub at: Timestamp,
    pub health: Health,
}
