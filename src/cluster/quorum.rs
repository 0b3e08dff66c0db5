//! PURE: the global state of a target from what its sites see — the site quorum.
//!
//! Each site that probes a target has its own settled state for it (its `state` rows, kept by
//! the member of that site that owns the target). The leader combines them: the target is
//! *globally down* when at least `K` of the **live** sites that probe it see it down, and
//! globally up otherwise. Only global transitions are announced, so a target that one site
//! cannot reach (that site's network, a regional block) shows in that site's rows without
//! waking support, and an outage seen from `K` sites is one email naming them.
//!
//! Rules, and why:
//! - **Default `K`** is a majority of the live sites ([`default_quorum`]): with one site it is
//!   1, which is today's behaviour of a single instance.
//! - **A site is live** while at least one of its members heartbeats. A site that is gone (all
//!   its members' leases expired) does not vote: its last state is old news, and counting it
//!   either way would let a dead site hold an outage open or hide one. The verdict says which
//!   sites are missing, for the email.
//! - **`K` is capped at the number of live sites.** Otherwise losing sites would make an outage
//!   impossible to declare (two sites, `--quorum 2`, one gone: the survivor could never alert),
//!   which is the one failure a monitor must not have. The cost is that a lone surviving site
//!   alerts on its own view; the email names the missing sites so the reader can judge.
//! - **A live site with no settled state yet** (a target it has never settled, while its owner
//!   confirms) counts as *not down*: an outage needs `K` sites that actually see it down. It
//!   still counts among the live sites, for the default `K` and the cap.
//! - **No live site knows anything** (none live, or all unknown): there is no verdict
//!   (`global: None`) and the previous global state holds. Declaring "up" from no evidence
//!   would send a false recovery.

use std::num::NonZeroUsize;

use crate::detector::Health;

/// What one site that probes the target says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteView {
    /// No live member in the site: it does not vote.
    Gone,
    /// A live site: its settled state of the target, `None` while it has none.
    Live(Option<Health>),
}

/// The state of a target across sites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobalHealth {
    Up,
    /// At least the quorum of live sites see it down; these are all the sites that do, sorted.
    Down {
        sites_down: Vec<String>,
    },
}

/// The combination of the sites' views of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `None` when no live site has a settled state: nothing is known, the previous holds.
    pub global: Option<GlobalHealth>,
    /// The quorum applied: the configured `K` (or the majority of live sites), capped at the
    /// number of live sites.
    pub quorum: usize,
    /// How many sites are live.
    pub live: usize,
    /// Sites that probe the target but have no live member, sorted.
    pub missing: Vec<String>,
    /// Live sites with no settled state of the target yet, sorted.
    pub unknown: Vec<String>,
}

/// A majority of `live_sites`: ⌊n/2⌋ + 1. With one site, 1 (a single instance's behaviour);
/// with two, both must agree; with three, two.
pub fn default_quorum(live_sites: usize) -> usize {
    live_sites / 2 + 1
}

/// Combines `sites` (each site that probes the target, once, with what it sees) under the
/// configured quorum (`None`: a majority of the live sites).
pub fn judge(sites: &[(&str, SiteView)], quorum: Option<NonZeroUsize>) -> Verdict {
    let names = |keep: fn(&SiteView) -> bool| -> Vec<String> {
        let mut names: Vec<String> =
            sites.iter().filter(|(_, view)| keep(view)).map(|(name, _)| name.to_string()).collect();
        names.sort();
        names
    };
    let missing = names(|view| *view == SiteView::Gone);
    let unknown = names(|view| *view == SiteView::Live(None));
    let sites_down = names(|view| *view == SiteView::Live(Some(Health::Down)));
    let live = sites.len() - missing.len();
    let quorum = quorum.map_or(default_quorum(live), NonZeroUsize::get).min(live);
    let global = if live == unknown.len() {
        None
    } else if sites_down.len() >= quorum {
        Some(GlobalHealth::Down { sites_down })
    } else {
        Some(GlobalHealth::Up)
    };
    Verdict { global, quorum, live, missing, unknown }
}

/// A change of global state, for the leader to record and (if [`GlobalTransition::notifies`])
/// announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobalTransition {
    /// Globally down, from up or as the first known state: the sites that see it down.
    Outage { sites_down: Vec<String> },
    /// Globally up again after an outage.
    Recovery,
    /// The first known global state is up: recorded, not announced (as the detector's first
    /// settled `Up` of a new target).
    FirstUp,
}

impl GlobalTransition {
    /// Every outage and every recovery; never the first `Up`.
    pub fn notifies(&self) -> bool {
        !matches!(self, GlobalTransition::FirstUp)
    }
}

/// The transition from the recorded global state `previous` (`None`: never recorded) to the
/// verdict `now` (`None`: no verdict, nothing changes). A change of the set of sites that see
/// an ongoing outage is not a transition: the outage email was sent, the recovery will be.
pub fn transition(
    previous: Option<&GlobalHealth>,
    now: Option<&GlobalHealth>,
) -> Option<GlobalTransition> {
    match (previous, now?) {
        (None, GlobalHealth::Up) => Some(GlobalTransition::FirstUp),
        (Some(GlobalHealth::Down { .. }), GlobalHealth::Up) => Some(GlobalTransition::Recovery),
        (None | Some(GlobalHealth::Up), GlobalHealth::Down { sites_down }) => {
            Some(GlobalTransition::Outage { sites_down: sites_down.clone() })
        }
        (Some(GlobalHealth::Up), GlobalHealth::Up)
        | (Some(GlobalHealth::Down { .. }), GlobalHealth::Down { .. }) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::{Down, Up};
    use SiteView::{Gone, Live};

    fn down(sites: &[&str]) -> Option<GlobalHealth> {
        Some(GlobalHealth::Down { sites_down: sites.iter().map(|s| s.to_string()).collect() })
    }

    #[test]
    fn the_default_quorum_is_a_majority_of_live_sites() {
        let quorums: Vec<usize> = (1..=6).map(default_quorum).collect();
        assert_eq!(quorums, [1, 2, 2, 3, 3, 4]);
    }

    /// `"eu=down us=up b=? c=gone"` as a site list.
    fn sites(text: &str) -> Vec<(&str, SiteView)> {
        let view = |v: &str| match v {
            "up" => Live(Some(Up)),
            "down" => Live(Some(Down)),
            "?" => Live(None),
            "gone" => Gone,
            other => panic!("unknown view {other}"),
        };
        text.split_whitespace()
            .map(|site| site.split_once('=').map(|(n, v)| (n, view(v))).expect("name=view"))
            .collect()
    }

    /// `"up"`, `"none"` or `"down eu us"` as a verdict.
    fn global(text: &str) -> Option<GlobalHealth> {
        match text.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["none"] => None,
            ["up"] => Some(GlobalHealth::Up),
            ["down", sites @ ..] => down(sites),
            _ => panic!("unknown verdict {text}"),
        }
    }

    #[test]
    fn a_target_is_down_when_a_quorum_of_live_sites_see_it_down() {
        // (name, sites, configured K (0: default), verdict, quorum applied, missing, unknown)
        type Case =
            (&'static str, &'static str, usize, &'static str, usize, &'static str, &'static str);
        let cases: &[Case] = &[
            ("one site, up: today's behaviour", "direct=up", 0, "up", 1, "", ""),
            ("one site, down", "direct=down", 0, "down direct", 1, "", ""),
            ("one site, not settled yet", "direct=?", 0, "none", 1, "", "direct"),
            ("two sites, K 2, down from one: not global", "eu=down us=up", 2, "up", 2, "", ""),
            (
                "two sites, K 2, down from both: named",
                "us=down eu=down",
                2,
                "down eu us",
                2,
                "",
                "",
            ),
            ("two sites, default K is both", "eu=down us=up", 0, "up", 2, "", ""),
            ("two sites, K 1: either alerts", "eu=down us=up", 1, "down eu", 1, "", ""),
            ("three sites, default K 2: one down", "a=down b=up c=up", 0, "up", 2, "", ""),
            ("three sites, default K 2: two down", "a=down b=up c=down", 0, "down a c", 2, "", ""),
            (
                "three sites, all down: all named",
                "c=down b=down a=down",
                0,
                "down a b c",
                2,
                "",
                "",
            ),
            ("unknown is not down, but is live", "a=down b=? c=up", 0, "up", 2, "", "b"),
            ("unknown does not block a quorum", "a=down b=? c=down", 0, "down a c", 2, "", "b"),
            ("a site gone: majority of the live ones", "a=down b=gone c=up", 0, "up", 2, "b", ""),
            ("a site gone, the rest down", "a=down b=gone c=down", 0, "down a c", 2, "b", ""),
            (
                "K 2, one site left: capped, it alerts alone",
                "eu=gone us=down",
                2,
                "down us",
                1,
                "eu",
                "",
            ),
            ("K above the number of sites: capped", "a=down b=down", 5, "down a b", 2, "", ""),
            ("a gone site's last word does not count", "eu=gone us=up", 1, "up", 1, "eu", ""),
            ("every site gone: no verdict", "eu=gone us=gone", 0, "none", 0, "eu us", ""),
            ("no site at all: no verdict", "", 0, "none", 0, "", ""),
        ];
        for (name, text, k, expected, quorum, missing, unknown) in cases {
            let sites = sites(text);
            let verdict = judge(&sites, NonZeroUsize::new(*k));
            let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
            assert_eq!(verdict.global, global(expected), "{name}");
            assert_eq!(verdict.quorum, *quorum, "{name}: quorum");
            assert_eq!(verdict.missing, words(missing), "{name}: missing");
            assert_eq!(verdict.unknown, words(unknown), "{name}: unknown");
            assert_eq!(verdict.live, sites.len() - verdict.missing.len(), "{name}: live");
        }
    }

    #[test]
    fn only_changes_of_global_state_are_transitions() {
        use GlobalTransition::{FirstUp, Outage, Recovery};
        let up = Some(GlobalHealth::Up);
        let outage = |sites: &[&str]| {
            Some(Outage { sites_down: sites.iter().map(|s| s.to_string()).collect() })
        };
        // (name, previous, now, expected)
        type Case =
            (&'static str, Option<GlobalHealth>, Option<GlobalHealth>, Option<GlobalTransition>);
        let cases: &[Case] = &[
            ("first verdict up: silent", None, up.clone(), Some(FirstUp)),
            ("first verdict down: outage", None, down(&["eu"]), outage(&["eu"])),
            ("up to down", up.clone(), down(&["eu", "us"]), outage(&["eu", "us"])),
            ("down to up", down(&["eu"]), up.clone(), Some(Recovery)),
            ("up stays up", up.clone(), up.clone(), None),
            ("down stays down", down(&["eu"]), down(&["eu"]), None),
            ("more sites see the outage: no new email", down(&["eu"]), down(&["eu", "us"]), None),
            ("no verdict after up", up.clone(), None, None),
            ("no verdict after down: no false recovery", down(&["eu"]), None, None),
            ("no verdict, never recorded", None, None, None),
        ];
        for (name, previous, now, expected) in cases {
            assert_eq!(transition(previous.as_ref(), now.as_ref()), *expected, "{name}");
        }
        assert!(!FirstUp.notifies());
        assert!(Recovery.notifies());
        assert!(Outage { sites_down: vec!["eu".into()] }.notifies());
    }
}
