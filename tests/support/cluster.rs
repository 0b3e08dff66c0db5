//! A cluster on loopback for the end-to-end tests of cluster mode: several `api-monitor run
//! --cluster` members on one scratch MariaDB database, each reaching it through its *own*
//! [`Forwarder`] (so a test can cut one member from the database and not the others), one real
//! SMTP server, and readers for what the contract promises: the members' log lines
//! (`cluster member`, `LEADER`, `owning targets=N of M`), the `cluster_leader` row and the
//! emails.
//!
//! Why a harness: every cluster test needs the same dozen arguments per member, has to tell
//! the members' interleaved logs apart (each is echoed with its own prefix) and has to find
//! "the leader" as the database and the log agree on it, not as one of them guesses.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::{FromRow, Queryable};
use testkit::Capture;

use super::scratch_db::{self, ScratchDb};
use super::{forwarded_mysql, Forwarder, Mail, Process, SmtpServer, SUPPORT};

/// The lease every cluster test runs with: the shortest allowed, so failovers take seconds.
pub const LEASE: Duration = Duration::from_secs(3);

/// How long a cluster event (a takeover, a rebalancing, an email) may take on a loaded 2-core
/// machine before a test fails: ten leases, where the contract needs one or two.
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// One running member: its process, its own way to the database, its site and instance id.
pub struct Member {
    pub process: Process,
    /// This member's own path to MariaDB: cut it to take this member (only) off the database.
    pub forwarder: Forwarder,
    pub site: String,
    /// The instance id from its `cluster member … instance=ID` line (`cluster_leader.holder`).
    pub id: String,
    /// How its lines are echoed (`eu-1`), for messages.
    pub label: String,
}

/// A member's latest `owning targets=N of M site=SITE members=K` line, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owning {
    pub targets: usize,
    pub of: usize,
    /// `members=K`; absent from the line of a member that is no live member of its site (cut
    /// off, frozen), which owns nothing.
    pub members: Option<usize>,
}

impl Owning {
    fn parse(line: &str) -> Option<Owning> {
        let number = |key: &str| testkit::fake_api::token(line, key)?.parse().ok();
        let of = line.split(" of ").nth(1)?.split_whitespace().next()?.parse().ok()?;
        Some(Owning { targets: number("owning targets=")?, of, members: number("members=") })
    }
}

impl Member {
    /// How many lines it has logged so far: a mark to look at what comes after.
    pub fn mark(&self) -> usize {
        self.process.stderr.len()
    }

    /// Its lines from `mark` on.
    pub fn lines_since(&self, mark: usize) -> Vec<String> {
        self.process.stderr.read(|lines| lines[mark.min(lines.len())..].to_vec())
    }

    /// How many of its lines from `mark` on contain `needle`.
    pub fn count_since(&self, mark: usize, needle: &str) -> usize {
        self.lines_since(mark).iter().filter(|l| l.contains(needle)).count()
    }

    /// Its latest `owning` line, parsed (`None` before the first).
    pub fn owning(&self) -> Option<Owning> {
        self.owning_since(0)
    }

    /// Its latest `owning` line from `mark` on.
    pub fn owning_since(&self, mark: usize) -> Option<Owning> {
        self.lines_since(mark)
            .iter()
            .rev()
            .find(|l| l.contains("owning targets="))
            .map(|l| Owning::parse(l).unwrap_or_else(|| panic!("{}: unparsable {l:?}", self.label)))
    }

    /// Whether its latest word on leadership is `LEADER` (not `NOT LEADER`).
    pub fn says_leader(&self) -> bool {
        self.process.stderr.read(|lines| {
            lines
                .iter()
                .rev()
                .find(|l| l.contains("LEADER cluster="))
                .is_some_and(|l| !l.contains("NOT LEADER"))
        })
    }

    /// Waits (up to `limit`) for a line from `mark` on containing `needle`; returns it.
    pub fn wait_since(&self, mark: usize, needle: &str, limit: Duration) -> String {
        self.process
            .stderr
            .wait_for(
                Instant::now() + limit,
                &format!("{}: a line with {needle:?}", self.label),
                |lines| lines.iter().skip(mark).find(|l| l.contains(needle)).cloned(),
                || Ok(()),
            )
            .unwrap_or_else(|e| panic!("{e}{}", self.process.tail(12)))
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }
}

/// A cluster under test: its members, its mail and its database.
///
/// Fields drop in order: the members are killed before the scratch database is dropped.
pub struct Cluster {
    pub members: Vec<Member>,
    pub smtp: SmtpServer,
    pub db: ScratchDb,
    /// The cluster's name (`--cluster`).
    pub name: String,
    /// `--interval` of every member (1 s unless a test changes it before the first join).
    pub interval: Duration,
    /// Whether members log at debug level (`-v`): every probe, every notification recorded.
    pub verbose: bool,
    /// `--lease` of every member ([`LEASE`] unless a test changes it before the first join).
    pub lease: Duration,
}

impl Cluster {
    /// An empty cluster on a fresh scratch database; `None` (the test is skipped, loudly) when
    /// there is no MySQL and `REQUIRE_MYSQL` is unset.
    pub fn new(tag: &str) -> Option<Cluster> {
        let db = scratch_db::mysql(tag)?;
        Some(Cluster {
            members: Vec::new(),
            smtp: SmtpServer::start(),
            db,
            name: "prod".to_owned(),
            interval: Duration::from_secs(1),
            verbose: true,
            lease: LEASE,
        })
    }

    /// Starts a member in `site` with `args` (its targets, regions, quorum…) after the common
    /// ones, and waits for its `cluster member` line; returns its index.
    pub fn join(&mut self, site: &str, args: &[&str]) -> usize {
        let (forwarder, db_url) = forwarded_mysql(&self.db);
        let n = self.members.iter().filter(|m| m.site == site).count();
        let label = format!("{site}-{n}");
        let interval = format!("{}ms", self.interval.as_millis());
        let lease = format!("{}s", self.lease.as_secs());
        let mut all = vec![
            "run",
            "--cluster",
            &self.name,
            "--site",
            site,
            "--lease",
            &lease,
            "--interval",
            &interval,
            "--timeout",
            "1s",
            "--failures",
            "2",
            "--successes",
            "2",
            "--db",
            &db_url,
            "--smtp",
            &self.smtp.url,
            "--support",
            SUPPORT,
            "--from",
            "monitor@example.com",
        ];
        all.extend_from_slice(args);
        if self.verbose {
            all.push("-v");
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_api-monitor"));
        command.args(&all).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        // Each member's lines are echoed with its own label, so a failure's output can be read.
        let echo: &'static str = Box::leak(format!("  {label:>5} | ").into_boxed_str());
        let capture = Capture { echo: Some(echo), ..Capture::default() };
        let (process, _stdout) =
            Process::spawn(command, capture).unwrap_or_else(|e| panic!("{label}: {e}"));
        let line = process.wait_for_line("cluster member cluster=");
        let id = testkit::fake_api::token(&line, "instance=")
            .unwrap_or_else(|| panic!("{label}: no instance= in {line:?}"))
            .to_owned();
        assert!(
            line.contains(&format!("cluster={} site={site} ", self.name))
                && line.contains(&format!("lease={lease}")),
            "{label}: the start line names the cluster, the site and the lease: {line:?}"
        );
        self.members.push(Member { process, forwarder, site: site.to_owned(), id, label });
        self.members.len() - 1
    }

    /// The rows `sql` returns, read directly (not through any member's forwarder).
    pub fn query<T: FromRow>(&self, sql: &str) -> Vec<T> {
        let opts = mysql::Opts::from_url(&self.db.url).expect("scratch URL");
        let mut conn = mysql::Conn::new(opts).expect("connect to the scratch database");
        conn.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `(holder, term)` of this cluster's leader row, if there is one yet.
    pub fn leader_row(&self) -> Option<(String, u64)> {
        let opts = mysql::Opts::from_url(&self.db.url).expect("scratch URL");
        let mut conn = mysql::Conn::new(opts).expect("connect to the scratch database");
        // Before the first member created the table there is nothing to read: no leader yet.
        conn.exec_first(
            "SELECT holder, term FROM cluster_leader WHERE cluster = ?",
            (self.name.as_str(),),
        )
        .ok()
        .flatten()
    }

    /// Waits until one member is the leader by both accounts — it holds `cluster_leader` and
    /// its latest leadership line is `LEADER` — and is not among `except`; returns its index.
    pub fn wait_for_leader(&self, except: &[usize]) -> usize {
        self.eventually("a leader that the database and its log agree on", CLUSTER_DEADLINE, || {
            let (holder, _) = self.leader_row()?;
            self.members
                .iter()
                .position(|m| m.id == holder)
                .filter(|i| !except.contains(i) && self.members[*i].says_leader())
        })
    }

    /// Waits until the members `of` (all of one site) each logged an `owning` line and by
    /// their latest ones together own all `total` targets, and still do one beat later (a
    /// rebalancing in flight can add up by chance for a moment); returns how long that took.
    ///
    /// Only the sum is checked, not `members=`: a member logs when *its* share changes, so a
    /// member whose share a join or a loss did not touch keeps an older line.
    pub fn wait_settled(&self, of: &[usize], total: usize) -> Duration {
        let started = Instant::now();
        let holds = || {
            let latest: Vec<Option<Owning>> =
                of.iter().map(|&i| self.members[i].owning()).collect();
            latest.iter().all(|o| o.is_some_and(|o| o.of == total))
                && latest.iter().flatten().map(|o| o.targets).sum::<usize>() == total
        };
        loop {
            self.eventually(
                &format!("members {of:?} owning all {total} targets between them"),
                CLUSTER_DEADLINE,
                || holds().then_some(()),
            );
            std::thread::sleep(self.lease / 3);
            if holds() {
                return started.elapsed();
            }
        }
    }

    /// The emails so far whose subject contains `needle`.
    pub fn mails(&self, needle: &str) -> Vec<Mail> {
        self.smtp
            .mails
            .read(|m| m.iter().filter(|m| m.subject().contains(needle)).cloned().collect())
    }

    /// Waits until `n` emails have a subject containing `needle`; returns them.
    pub fn wait_mails(&self, needle: &str, n: usize, limit: Duration) -> Vec<Mail> {
        self.smtp
            .mails
            .wait_for(
                Instant::now() + limit,
                &format!("{n} email(s) with {needle:?} in the subject"),
                |mails| {
                    let found: Vec<Mail> =
                        mails.iter().filter(|m| m.subject().contains(needle)).cloned().collect();
                    (found.len() >= n).then_some(found)
                },
                || Ok(()),
            )
            .unwrap_or_else(|e| panic!("{e}; subjects so far: {:?}", self.subjects()))
    }

    /// Every subject received so far, in order.
    pub fn subjects(&self) -> Vec<String> {
        self.smtp.mails.read(|m| m.iter().map(Mail::subject).collect())
    }

    /// Panics unless every email received carries its own notification key in its Message-ID:
    /// the same key twice is the same notification delivered twice.
    pub fn assert_keys_unique(&self) {
        let keys: Vec<String> = self.smtp.mails.read(|m| m.iter().map(key_of).collect());
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            keys.len(),
            "a key delivered twice: {keys:?}; {:?}",
            self.subjects()
        );
        assert!(keys.iter().all(|k| !k.is_empty()), "every email has a Message-ID key: {keys:?}");
    }

    /// Polls `ready` every 100 ms until it gives a value; panics with `what` after `limit`.
    pub fn eventually<T>(&self, what: &str, limit: Duration, ready: impl Fn() -> Option<T>) -> T {
        eventually(what, limit, ready)
    }
}

/// Polls `ready` every 100 ms until it gives a value; panics with `what` after `limit`.
pub fn eventually<T>(what: &str, limit: Duration, ready: impl Fn() -> Option<T>) -> T {
    let give_up = Instant::now() + limit;
    loop {
        if let Some(found) = ready() {
            return found;
        }
        assert!(Instant::now() < give_up, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The notification key an email carries in its Message-ID (`<KEY@api-monitor>`).
pub fn key_of(mail: &Mail) -> String {
    let id = mail.header("Message-ID").unwrap_or_default();
    id.trim_matches(['<', '>']).split('@').next().unwrap_or_default().to_owned()
}

/// Entries of `log` stamped in `[from, to)`, for counting probes over a window.
pub fn stamped_between<T>(
    log: &Arc<testkit::Log<T>>,
    from: Instant,
    to: Instant,
    at: impl Fn(&T) -> Instant,
) -> usize {
    log.read(|items| items.iter().filter(|i| (from..to).contains(&at(i))).count())
}

/// Sleeps until `moment` (a measurement window's end; never what a test asserts on).
pub fn sleep_until(moment: Instant) {
    let now = Instant::now();
    if moment > now {
        std::thread::sleep(moment - now);
    }
}
