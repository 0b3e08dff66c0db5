//! PURE: which live member of a site probes a target — rendezvous (highest random weight)
//! hashing.
//!
//! Every member of a site computes, for every target, a weight per live member of that site and
//! gives the target to the member of highest weight. No coordination is needed beyond agreeing
//! on the list of live members (which each member reads from the database): the same inputs give
//! the same owner on every member, whatever the order of the list.
//!
//! Why rendezvous hashing rather than "target index modulo member count": when a member goes,
//! only *its* targets move (each to the member of next-highest weight), and when one comes, only
//! the targets it now wins move to it. Every other target keeps its owner, so its detector keeps
//! running where it is and no needless resumption (a read of the last row) happens. It is also
//! balanced without virtual nodes, and `O(members)` per target, which is nothing for the few
//! members of a site.
//!
//! The weight is XXH64 (seed 0) of `len(member) as u64, little-endian || member || target`.
//! XXH64 is a published algorithm with reference vectors (the `twox-hash` crate, already in the
//! tree through `mysql`), so two members built by different Rust versions or on different
//! platforms agree. `std`'s `DefaultHasher` is explicitly unspecified across releases and would
//! let a mixed-version cluster probe a target twice or not at all. The length prefix makes the
//! bytes unambiguous (member `"a"` with target `"bc"` is not member `"ab"` with target `"c"`)
//! even if an id contains a NUL. Changing any of this moves targets between members: the
//! `known_owners_do_not_change` test pins it.

use std::hash::Hasher;

use twox_hash::XxHash64;

use crate::cluster::MemberId;

/// The seed of XXH64 for weights. Part of the cluster's wire format: every member must use the
/// same one.
const SEED: u64 = 0;

/// The rendezvous weight of `member` for `target`.
fn weight(member: &MemberId, target: &str) -> u64 {
    let mut hasher = XxHash64::with_seed(SEED);
    // `Hasher::write` feeds the bytes as they are (unlike `Hash::hash`, which adds a marker):
    // the result is XXH64 of the concatenation.
    hasher.write(&(member.as_str().len() as u64).to_le_bytes());
    hasher.write(member.as_str().as_bytes());
    hasher.write(target.as_bytes());
    hasher.finish()
}

/// The member of `members` (the live members of one site) that probes `target`; `None` when
/// there is none. Ties of weight (practically never) go to the greater id, so the answer does
/// not depend on the order of `members`; a member listed twice changes nothing.
pub fn owner<'a>(target: &str, members: &'a [MemberId]) -> Option<&'a MemberId> {
    members.iter().max_by(|a, b| (weight(a, target), *a).cmp(&(weight(b, target), *b)))
}

/// The targets among `targets` that `me` probes, in their order. A member missing from
/// `members` owns nothing: a member whose own heartbeat has expired (cut from the database,
/// frozen) has been replaced by the others and must stop probing.
pub fn owned<'a>(
    me: &MemberId,
    targets: impl IntoIterator<Item = &'a str>,
    members: &[MemberId],
) -> Vec<&'a str> {
    targets.into_iter().filter(|target| owner(target, members) == Some(me)).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn ids(names: &[&str]) -> Vec<MemberId> {
        names.iter().map(|n| MemberId::new(*n)).collect()
    }

    fn targets(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("https://api{i}.example.com/health")).collect()
    }

    /// The owner of each target, by target.
    fn owners<'a>(targets: &'a [String], members: &[MemberId]) -> BTreeMap<&'a str, MemberId> {
        targets.iter().filter_map(|t| owner(t, members).map(|m| (t.as_str(), m.clone()))).collect()
    }

    #[test]
    fn the_weight_is_xxh64_of_the_documented_bytes() {
        // XXH64 reference vectors (seed 0): the empty input, and "a".
        assert_eq!(XxHash64::oneshot(0, b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(XxHash64::oneshot(0, b"a"), 0xD24E_C4F1_A98C_6E5B);
        let mut bytes = 2u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"m1https://x");
        assert_eq!(weight(&MemberId::new("m1"), "https://x"), XxHash64::oneshot(SEED, &bytes));
        assert_ne!(
            weight(&MemberId::new("a"), "bc"),
            weight(&MemberId::new("ab"), "c"),
            "the length prefix keeps member and target apart"
        );
    }

    #[test]
    fn known_owners_do_not_change() {
        // Hard-coded on purpose: a change of hash, seed or byte layout fails here, because in a
        // cluster of mixed versions it would make members disagree about owners.
        let members = ids(&["eu-1", "eu-2", "eu-3"]);
        // Computed with an independent XXH64 (a few lines of Python after the spec), not with
        // this code.
        let cases: &[(&str, &str)] = &[
            ("https://api.example.com/health", "eu-1"),
            ("https://api0.example.com/health", "eu-1"),
            ("https://api1.example.com/health", "eu-3"),
            ("https://api2.example.com/health", "eu-2"),
            ("http://localhost:8080/", "eu-1"),
            ("https://status.example.org/ping", "eu-2"),
        ];
        assert_eq!(weight(&MemberId::new("m1"), "https://x"), 0xA200_5B6C_086F_4177);
        assert_eq!(weight(&members[0], cases[0].0), 0xE1CB_64F9_0206_3E39);
        for (target, expected) in cases {
            assert_eq!(owner(target, &members).map(MemberId::as_str), Some(*expected), "{target}");
        }
    }

    #[test]
    fn every_target_has_one_owner_whatever_the_order_of_members() {
        let targets = targets(500);
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("one member", &["a"], &["a"]),
            ("reversed", &["a", "b", "c"], &["c", "b", "a"]),
            ("rotated", &["a", "b", "c", "d"], &["c", "d", "a", "b"]),
            ("listed twice", &["a", "b", "c"], &["b", "a", "c", "a"]),
            (
                "uuid-like ids",
                &["3f2a9c01", "77b0e4d2", "c0ffee00"],
                &["c0ffee00", "3f2a9c01", "77b0e4d2"],
            ),
        ];
        for (name, one, other) in cases {
            let (one, other) = (ids(one), ids(other));
            assert_eq!(owners(&targets, &one), owners(&targets, &other), "{name}");
            assert_eq!(owners(&targets, &one).len(), targets.len(), "{name}: every target owned");
            let distinct: BTreeSet<&MemberId> = one.iter().collect();
            let counted: usize = distinct
                .iter()
                .map(|m| owned(m, targets.iter().map(String::as_str), &one).len())
                .sum();
            assert_eq!(counted, targets.len(), "{name}: exactly one owner each");
        }
    }

    #[test]
    fn no_member_no_owner_and_a_non_member_owns_nothing() {
        assert_eq!(owner("https://x", &[]), None);
        let me = MemberId::new("me");
        assert!(owned(&me, ["https://x", "https://y"], &[]).is_empty());
        let others = ids(&["a", "b"]);
        assert!(owned(&me, ["https://x", "https://y"], &others).is_empty(), "expired: stop");
        assert_eq!(
            owned(&me, ["https://x", "https://y"], &ids(&["me"])),
            ["https://x", "https://y"]
        );
    }

    #[test]
    fn targets_are_balanced_across_members() {
        let targets = targets(3_000);
        // (members, lowest and highest share allowed, in %)
        let cases: &[(&[&str], f64, f64)] = &[
            (&["eu-1", "eu-2", "eu-3"], 25.0, 42.0),
            (&["3f2a9c01", "77b0e4d2", "c0ffee00"], 25.0, 42.0),
            (&["a", "b"], 42.0, 58.0),
            (&["a", "b", "c", "d", "e"], 15.0, 25.0),
        ];
        for (members, low, high) in cases {
            let members = ids(members);
            for member in &members {
                let share = owned(member, targets.iter().map(String::as_str), &members).len();
                let percent = 100.0 * share as f64 / targets.len() as f64;
                assert!(
                    (*low..=*high).contains(&percent),
                    "{member}: {percent:.1}% of {members:?}"
                );
            }
        }
    }

    #[test]
    fn a_member_going_or_coming_moves_only_its_own_targets() {
        let targets = targets(3_000);
        let before = ids(&["eu-1", "eu-2", "eu-3"]);
        let was = owners(&targets, &before);

        let gone = MemberId::new("eu-2");
        let after: Vec<MemberId> = before.iter().filter(|m| **m != gone).cloned().collect();
        for (target, now) in owners(&targets, &after) {
            let old = &was[target];
            if *old == gone {
                assert_ne!(now, gone, "{target} leaves the member that went");
            } else {
                assert_eq!(&now, old, "{target} stays where it was");
            }
        }

        let new = MemberId::new("eu-4");
        let mut after = before.clone();
        after.push(new.clone());
        let mut moved = 0;
        for (target, now) in owners(&targets, &after) {
            if now != was[target] {
                assert_eq!(now, new, "{target} moves only to the newcomer");
                moved += 1;
            }
        }
        let percent = 100.0 * moved as f64 / targets.len() as f64;
        assert!((18.0..=32.0).contains(&percent), "the newcomer takes about a quarter: {percent}");
    }
}
