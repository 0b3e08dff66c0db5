//! PURE: the leader lease and the liveness of members, decided from rows the database returned.
//!
//! One row per cluster names the leader (`holder`), its `term` and its last heartbeat. Every
//! member reads it each interval with the row's *age* computed by the database
//! (`NOW(6) - heartbeat_at`), so that hosts' clocks never meet, and [`decide`]s:
//! - the leader whose lease is fresh **keeps** it, under the term the row holds;
//! - anyone, the old leader included, **takes over** a missing or expired lease with the next
//!   term;
//! - everyone else **follows** the holder.
//!
//! The decision is a proposal, not a fact: two members may decide to take over from the same
//! expired row, and a leader may freeze between its decision and its next write. The store makes
//! it a fact with a conditional write on the very row and term the decision was made from (see
//! [`crate::cluster`]): one racer wins, the other affects zero rows and follows; a frozen leader's
//! renewal or fenced write affects zero rows once someone else holds a higher term.
//!
//! Why the old leader takes over rather than keeps an expired lease: once its lease has
//! expired, others may already be taking over under term + 1. If it also races for term + 1
//! through the same conditional update, exactly one of them wins; if it kept its old term it
//! would act under a term that may be superseded at any moment. So **a term is only ever kept
//! while the lease is fresh, and it is always the term read from the row**, never one
//! remembered in memory: a stale leader that comes back cannot keep an old term.
//!
//! The lease is the half-open interval `[0, lease)`: a heartbeat exactly `lease` old is expired,
//! for the leader ([`decide`]) as for members ([`members_alive`]), so the two never disagree.

use std::time::Duration;

use crate::cluster::MemberId;
use crate::timestamp::Timestamp;

/// The leader row of a cluster as read from the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderRow {
    pub holder: MemberId,
    /// Grows by one at every takeover; the first leader's is 1.
    pub term: u64,
    /// Age of the last heartbeat by the database's clock (see [`age`]).
    pub age: Duration,
}

/// What a member does about the leader lease this interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// I hold a fresh lease: renew it (conditionally on `holder = me AND term = term`) and act
    /// as leader under `term`.
    Keep { term: u64 },
    /// No leader, or its lease expired: try to become leader under `next_term` (conditionally on
    /// the term read, or on the row's absence when `next_term` is 1).
    TakeOver { next_term: u64 },
    /// Someone else holds a fresh lease: do no leader work.
    Follow { leader: MemberId, term: u64 },
}

/// The decision of `me` from the leader `row` (`None`: no row yet) and the `lease` length.
pub fn decide(row: Option<&LeaderRow>, me: &MemberId, lease: Duration) -> LeaseDecision {
    match row {
        None => LeaseDecision::TakeOver { next_term: 1 },
        // Saturating: 2^64 takeovers do not happen; no panic path if they did.
        Some(row) if row.age >= lease => {
            LeaseDecision::TakeOver { next_term: row.term.saturating_add(1) }
        }
        Some(row) if row.holder == *me => LeaseDecision::Keep { term: row.term },
        Some(row) => LeaseDecision::Follow { leader: row.holder.clone(), term: row.term },
    }
}

/// A member's row as read from the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    pub id: MemberId,
    pub site: String,
    /// The version the member runs, as it wrote it at its last heartbeat.
    pub version: String,
    /// When it first registered, by the database's clock (kept across its heartbeats).
    pub started_at: Timestamp,
    /// Its last heartbeat as a database time, truncated to the millisecond. Unlike [`Self::age`]
    /// it does not move between reads: every member reads the same value until the next beat,
    /// so it can name a silence (e.g. the key of the "member stopped reporting" email).
    pub seen_at: Timestamp,
    /// Age of its last heartbeat by the database's clock (see [`age`]).
    pub age: Duration,
}

/// The members whose heartbeat is younger than `lease`, in the order of `rows`.
pub fn members_alive(rows: &[MemberRow], lease: Duration) -> Vec<&MemberRow> {
    rows.iter().filter(|row| row.age < lease).collect()
}

/// The ids of the live members of `site`, sorted: the input of [`crate::cluster::assign`].
pub fn site_members(alive: &[&MemberRow], site: &str) -> Vec<MemberId> {
    let mut ids: Vec<MemberId> =
        alive.iter().filter(|row| row.site == site).map(|row| row.id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A heartbeat's age from the microseconds the database computed
/// (`TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6))`). A negative age (a heartbeat written by
/// a database node whose clock is ahead, in a multi-primary setup) counts as just now: fresh,
/// which errs toward keeping a leader and a member rather than deposing them on a clock step.
pub fn age(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn row(holder: &str, term: u64, age_ms: u64) -> LeaderRow {
        LeaderRow { holder: MemberId::new(holder), term, age: Duration::from_millis(age_ms) }
    }

    #[test]
    fn the_lease_is_kept_taken_over_or_followed() {
        use LeaseDecision::{Follow, Keep, TakeOver};
        let follow = |leader: &str, term| Follow { leader: MemberId::new(leader), term };
        // (name, row, me, expected)
        let cases: &[(&str, Option<LeaderRow>, &str, LeaseDecision)] = &[
            ("no leader yet: the first term is 1", None, "a", TakeOver { next_term: 1 }),
            ("my fresh lease: keep its term", Some(row("a", 7, 1_000)), "a", Keep { term: 7 }),
            ("another's fresh lease: follow", Some(row("b", 7, 1_000)), "a", follow("b", 7)),
            (
                "another's expired lease: next term",
                Some(row("b", 7, 20_000)),
                "a",
                TakeOver { next_term: 8 },
            ),
            (
                "one millisecond short of the lease: still fresh",
                Some(row("b", 7, 14_999)),
                "a",
                follow("b", 7),
            ),
            (
                "exactly the lease: expired",
                Some(row("b", 7, 15_000)),
                "a",
                TakeOver { next_term: 8 },
            ),
            (
                "exactly the lease, mine: expired too",
                Some(row("a", 7, 15_000)),
                "a",
                TakeOver { next_term: 8 },
            ),
            (
                "my own expired lease: race for a new term, never keep",
                Some(row("a", 3, 60_000)),
                "a",
                TakeOver { next_term: 4 },
            ),
            (
                "a stale leader back: the row's higher term wins",
                Some(row("b", 4, 0)),
                "a",
                follow("b", 4),
            ),
            (
                "no overflow",
                Some(row("b", u64::MAX, 20_000)),
                "a",
                TakeOver { next_term: u64::MAX },
            ),
        ];
        for (name, row, me, expected) in cases {
            assert_eq!(decide(row.as_ref(), &MemberId::new(*me), LEASE), *expected, "{name}");
        }
    }

    #[test]
    fn a_frozen_leader_never_acts_under_its_old_term() {
        // a led under term 3, froze; b took over (term 4) and renewed; a wakes up.
        let me = MemberId::new("a");
        let mut term_in_memory = 3;
        for row in [row("b", 4, 2_000), row("b", 4, 16_000), row("c", 5, 0)] {
            match decide(Some(&row), &me, LEASE) {
                LeaseDecision::Keep { term } => term_in_memory = term,
                LeaseDecision::TakeOver { next_term } => {
                    assert!(next_term > 4, "a takeover is always above every term seen");
                }
                LeaseDecision::Follow { term, .. } => assert!(term > term_in_memory),
            }
        }
        assert_eq!(term_in_memory, 3, "never kept");
    }

    #[test]
    fn members_are_alive_while_their_heartbeat_is_younger_than_the_lease() {
        let member = |id: &str, site: &str, age_ms| MemberRow {
            id: MemberId::new(id),
            site: site.into(),
            version: "1.0.0".into(),
            started_at: Timestamp::from_millis(0),
            seen_at: Timestamp::from_millis(1_000),
            age: Duration::from_millis(age_ms),
        };
        let rows = [
            member("a", "eu", 0),
            member("b", "eu", 14_999),
            member("c", "eu", 15_000),
            member("d", "us", 15_001),
            member("e", "us", 3_000),
            member("f", "eu", 100),
        ];
        let alive = members_alive(&rows, LEASE);
        let ids: Vec<&str> = alive.iter().map(|row| row.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "e", "f"], "exactly the lease is gone, as for the leader");
        let site = |name| site_members(&alive, name);
        assert_eq!(site("eu"), [MemberId::new("a"), MemberId::new("b"), MemberId::new("f")]);
        assert_eq!(site("us"), [MemberId::new("e")]);
        assert!(site("ap").is_empty());
        assert!(members_alive(&rows, Duration::ZERO).is_empty(), "a zero lease: nobody");
    }

    #[test]
    fn ages_come_from_the_databases_microseconds() {
        let cases: &[(i64, Duration)] = &[
            (0, Duration::ZERO),
            (1_500_000, Duration::from_millis(1_500)),
            (-2_000, Duration::ZERO),
            (i64::MIN, Duration::ZERO),
            (i64::MAX, Duration::from_micros(i64::MAX as u64)),
        ];
        for (micros, expected) in cases {
            assert_eq!(age(*micros), *expected, "{micros}");
        }
    }
}
