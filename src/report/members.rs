//! The members section of `api-monitor report --cluster NAME`: who is in the cluster, where,
//! which version, since when, how fresh their heartbeat is, and who leads.
//!
//! Ages come from the database's clock (as the members themselves judge them), so the table
//! reads the same from any host.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cluster::lease::{LeaderRow, MemberRow};
use crate::duration::human;

/// The members of `cluster` as a table; a member whose heartbeat is `lease` old or older is
/// shown as gone.
pub fn table(
    cluster: &str,
    members: &[MemberRow],
    leader: Option<&LeaderRow>,
    lease: Duration,
) -> String {
    let live = members.iter().filter(|m| m.age < lease).count();
    let mut out = format!("\ncluster {cluster}: {live} live member(s)");
    match leader {
        Some(l) if l.age < lease => {
            let _ = write!(out, ", leader {} (term {})", l.holder, l.term);
        }
        Some(l) => {
            // A lease let go at a clean stop is dated 1970: its age says nothing.
            let _ = write!(out, ", no leader (the lease of term {} expired or was let go)", l.term);
        }
        None => out.push_str(", no leader yet"),
    }
    out.push('\n');
    if members.is_empty() {
        return out;
    }
    let rows: Vec<[String; 6]> = members
        .iter()
        .map(|m| {
            let leads = leader.is_some_and(|l| l.holder == m.id && l.age < lease);
            [
                m.id.to_string(),
                m.site.clone(),
                m.version.clone(),
                m.started_at.to_string(),
                format!("{} ago", human(m.age)),
                if m.age >= lease {
                    "gone".into()
                } else if leads {
                    "leader".into()
                } else {
                    "live".into()
                },
            ]
        })
        .collect();
    let header = ["instance", "site", "version", "started", "heartbeat", "state"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let line: Vec<String> =
            row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::MemberId;
    use crate::timestamp::Timestamp;

    fn member(id: &str, site: &str, age: u64) -> MemberRow {
        MemberRow {
            id: MemberId::new(id),
            site: site.into(),
            version: "0.1.0".into(),
            started_at: Timestamp::from_millis(1_795_000_000_000),
            seen_at: Timestamp::from_millis(1_795_000_100_000),
            age: Duration::from_secs(age),
        }
    }

    #[test]
    fn members_show_their_site_heartbeat_and_who_leads() {
        let lease = Duration::from_secs(15);
        let members = [member("a-1", "eu", 2), member("b-2", "us", 40)];
        let leader =
            LeaderRow { holder: MemberId::new("a-1"), term: 3, age: Duration::from_secs(1) };
        let shown = table("prod", &members, Some(&leader), lease);
        assert!(shown.contains("cluster prod: 1 live member(s), leader a-1 (term 3)"), "{shown}");
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[2].starts_with("instance  site  version"), "{shown}");
        assert!(lines[3].contains("a-1") && lines[3].ends_with("leader"), "{shown}");
        assert!(lines[4].contains("40s ago") && lines[4].ends_with("gone"), "{shown}");
        let stale = LeaderRow { age: Duration::from_secs(20), ..leader };
        assert!(table("prod", &members, Some(&stale), lease)
            .contains("no leader (the lease of term 3 expired"));
        assert!(table("prod", &[], None, lease).contains("0 live member(s), no leader yet"));
    }
}
