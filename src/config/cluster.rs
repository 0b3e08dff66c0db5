//! Cluster mode's settings: `--cluster`, `--site`, `--lease`, `--quorum` (and their variables
//! and file keys), checked against the rest of the configuration.
//!
//! Why the checks are strict: a cluster member that starts with a setting the others do not
//! share (another store, proxied regions it alone would honour) would silently break the one
//! promise of the cluster — each target probed once per site and announced once. So anything
//! that cannot work is refused at start with exit 2, naming the option and where it came from.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::regions::region_name;
use super::sources::Setting;
use super::validation::Cap;
use super::{ConfigError, Region, DIRECT};
use crate::duration::human;

/// The lease when none is set: a member (or the leader) silent this long is gone.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// The shortest lease: members beat every third of it, and a database round trip plus a
/// loaded host must fit well inside one beat.
pub const MIN_LEASE: Duration = Duration::from_secs(3);
/// The longest lease: beyond it a dead leader silences the whole cluster for too long.
pub const MAX_LEASE: Duration = Duration::from_secs(600);
/// The most sites a quorum may ask for.
pub const MAX_QUORUM: usize = 64;
/// The `state.region` of a cluster's global transitions (the leader's rows): not a site name.
pub const GLOBAL: &str = "global";

/// Cluster mode, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The cluster's name: instances sharing the database and this name are its members.
    pub name: String,
    /// Where this instance probes from (default [`DIRECT`]); plays the role of a region.
    pub site: String,
    /// A member whose heartbeat is this old is gone; members beat every third of it.
    pub lease: Duration,
    /// Sites that must see a target down for a global outage; `None`: a majority of the live
    /// sites.
    pub quorum: Option<NonZeroUsize>,
    /// The site as a region: its proxy and recipients when a region of the same name is
    /// configured (so one file can serve the members of every site), else direct.
    pub region: Region,
}

impl ClusterSettings {
    /// How often a member beats, reads the cluster and (if leader) renews its lease.
    pub fn beat_every(&self) -> Duration {
        self.lease / 3
    }
}

/// The raw settings, each with where it came from.
pub(super) struct Raw {
    pub cluster: Option<Setting>,
    pub site: Option<Setting>,
    pub lease: Option<Setting>,
    pub quorum: Option<Setting>,
}

/// Cluster mode from `raw`, or `None` without `--cluster`; `db` is the validated store URL
/// with its source (cluster mode needs MySQL), `regions` the configured regions (the one named
/// like the site, if any, gives the site its proxy).
pub(super) fn settings(
    raw: Raw,
    db: (&str, &str),
    regions: &[Region],
) -> Result<Option<ClusterSettings>, ConfigError> {
    let Some(cluster) = raw.cluster else {
        if let Some(stray) = [&raw.site, &raw.lease, &raw.quorum].into_iter().flatten().next() {
            return Err(ConfigError(format!(
                "{}: only meaningful in cluster mode; set --cluster NAME (CLUSTER) too, or \
                 leave it out",
                stray.source
            )));
        }
        return Ok(None);
    };
    let name = cluster.value.trim();
    let fits = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !fits {
        return Err(ConfigError(format!(
            "{}: invalid cluster name {name:?}: expected 1 to 64 letters, digits, '-', '_' or '.'",
            cluster.source
        )));
    }
    let (db_url, db_source) = db;
    if !db_url.starts_with("mysql://") {
        return Err(ConfigError(format!(
            "{}: cluster mode needs a MySQL store (--db mysql://USER:PASS@HOST:PORT/DB), and \
             {db_source} names another: a SQLite file cannot be shared by instances on several \
             hosts",
            cluster.source
        )));
    }
    let site = match raw.site {
        Some(site) => {
            let value = site.value.trim().to_owned();
            region_name(&site.source, &value)?;
            if value == GLOBAL {
                return Err(ConfigError(format!(
                    "{}: {GLOBAL:?} is reserved for the cluster's global state; name the site \
                     after where it probes from",
                    site.source
                )));
            }
            value
        }
        None => DIRECT.to_owned(),
    };
    let lease = match raw.lease {
        Some(setting) => {
            let d = super::validation::duration(
                Some(&setting),
                DEFAULT_LEASE,
                Cap { max: MAX_LEASE, shown: "10m" },
            )?;
            if d < MIN_LEASE {
                return Err(ConfigError(format!(
                    "{}: {:?} is below the {} floor of a lease (members beat every third of it)",
                    setting.source,
                    setting.value,
                    human(MIN_LEASE)
                )));
            }
            d
        }
        None => DEFAULT_LEASE,
    };
    let quorum = match raw.quorum {
        Some(Setting { value, source }) => match value.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_QUORUM).contains(&n) => NonZeroUsize::new(n),
            _ => {
                return Err(ConfigError(format!(
                    "{source}: expected a number of sites from 1 to {MAX_QUORUM}, got {value:?}"
                )))
            }
        },
        None => None,
    };
    // A region named like the site gives it a proxy and recipients: one config file can list
    // every site's region, and each member takes its own.
    let region = regions.iter().find(|r| r.name == site).cloned().unwrap_or(Region {
        name: site.clone(),
        proxy: None,
        recipients: Vec::new(),
        channels: Vec::new(),
    });
    Ok(Some(ClusterSettings { name: name.to_owned(), site, lease, quorum, region }))
}

#[cfg(test)]
mod tests {
    use crate::config::testing::config;

    fn error(args: &[&str], env: &[(&str, &str)]) -> String {
        config(args, env).expect_err("must be refused").0
    }

    const DB: &str = "mysql://root@127.0.0.1:3306/test";

    #[test]
    fn cluster_mode_is_off_by_default_and_takes_site_lease_and_quorum() {
        assert_eq!(config(&[], &[]).unwrap().cluster, None);
        let c = config(
            &["--db", DB, "--cluster", "prod", "--site", "eu", "--lease", "9s", "--quorum", "2"],
            &[],
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(
            (c.name.as_str(), c.site.as_str(), c.lease.as_secs(), c.quorum.map(|q| q.get())),
            ("prod", "eu", 9, Some(2))
        );
        assert_eq!(c.beat_every().as_secs(), 3);
        let c = config(&[], &[("DATABASE_URL", DB), ("CLUSTER", "prod"), ("SITE", "us")])
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!((c.site.as_str(), c.lease.as_secs(), c.quorum), ("us", 15, None));
        let c = config(&["--db", DB, "--cluster", "prod"], &[]).unwrap().cluster.unwrap();
        assert_eq!(c.site, "direct");
        let regions =
            ["--region", "eu=http://proxy-eu:3128", "--region", "us=http://proxy-us:3128"];
        let c =
            config(&[&["--db", DB, "--cluster", "p", "--site", "us"][..], &regions].concat(), &[])
                .unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.region.proxy_address().as_deref(), Some("http://proxy-us:3128"));
        assert_eq!(c.regions, vec![cluster.region.clone()], "only the site's region is probed");
        assert!(c.targets.iter().all(|t| t.regions == ["us"]));
    }

    #[test]
    fn what_cannot_work_is_refused_in_one_line_naming_the_option() {
        for (args, env, expected) in [
            (&["--cluster", "prod"][..], &[][..], "--cluster: cluster mode needs a MySQL store"),
            (&["--cluster", "prod", "--db", "sqlite://x.db"], &[], "a SQLite file cannot be"),
            (&["--db", DB, "--site", "eu"], &[], "--site: only meaningful in cluster mode"),
            (&["--db", DB], &[("QUORUM", "2")], "QUORUM: only meaningful in cluster mode"),
            (&["--db", DB, "--cluster", "a b"], &[], "--cluster: invalid cluster name"),
            (&["--db", DB, "--cluster", "p", "--site", "global"], &[], "reserved"),
            (&["--db", DB, "--cluster", "p", "--site", "e u"], &[], "--site: invalid region name"),
            (&["--db", DB, "--cluster", "p", "--lease", "1s"], &[], "below the 3s floor"),
            (&["--db", DB, "--cluster", "p", "--lease", "1h"], &[], "--lease: \"1h\" is too long"),
            (&["--db", DB, "--cluster", "p", "--quorum", "0"], &[], "--quorum: expected"),
            (&["--db", DB, "--cluster", "p"], &[("QUORUM", "x")], "QUORUM: expected a number"),
        ] {
            let shown = error(args, env);
            assert!(shown.contains(expected), "{args:?} {env:?}: {shown}");
            assert!(!shown.contains('\n'), "{shown}");
        }
    }
}
