//! The cluster step: three `api-monitor run --cluster` members sharing one MariaDB/MySQL
//! database — a scratch database per run (`bench_cluster_<pid>_<n>`), dropped after it.
//!
//! Each member reaches the database through a counting proxy of its own ([`DbProxy`]): the
//! proxy reads the MySQL client protocol and stamps the first packet of every exchange (sequence
//! number 0: `COM_QUERY`, `COM_STMT_EXECUTE`, `COM_STMT_PREPARE`, …), so the cost of
//! coordination is counted per member and per statement without touching the server. The
//! members' URLs carry `prefer_socket=false`, or the `mysql` crate would switch from the
//! loopback TCP connection to the server's Unix socket and bypass the proxy.
//!
//! - **failover** — one run per `--cluster-leases` lease: 3 members, one fake-api target at
//!   `--interval 1s`, SMTP to the bench's sink. First a steady window (`--cluster-window`, API
//!   up, no transition): the statements each member sends, per beat (its `cluster_member`
//!   upserts, counted at the proxy) and per probe interval, leader and followers apart. Then
//!   `--cluster-failovers` times: the API goes down; once the OUTAGE mail is in, the leader
//!   (`cluster_leader.holder`, matched to each member's `cluster member … instance=ID` line) is
//!   SIGKILLed and the API put back up at once; measured: kill → the next leader's `LEADER`
//!   line, and kill → the RECOVERED mail received. A new member replaces the dead one. Every
//!   mail is counted, so a transition mailed twice shows.
//! - **balance** — 3 members × `--cluster-targets` targets (a generated `--config`) on the
//!   in-process [`HealthServer`], default lease: each member's share (its last `owning
//!   targets=N` line) and the hits per target over `--cluster-rounds` intervals — one per
//!   interval each when every target is probed by exactly one member.
//!
//! Without a reachable MySQL the step is skipped and the report says so loudly, unless
//! `REQUIRE_MYSQL=1`, where it fails. No timing is asserted; what cannot be measured (no mail,
//! no leader, a member that dies on its own) fails the run.

use crate::{flag_duration, ms, progress, secs, spread, Ctx, Spread, STOP_LIMIT};
use mysql::prelude::Queryable;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use testkit::fake_api::token;
use testkit::{Capture, HealthServer, Log, Process};

type Result<T> = std::result::Result<T, String>;

/// Members of every run.
const MEMBERS: usize = 3;
/// The `--cluster` name of every run (each run has a database of its own).
const CLUSTER: &str = "bench";
/// Threads of the balance run's in-process API server.
const SERVER_WORKERS: usize = 8;
/// How often the waits look at the members' logs. Measured instants come from the stamps of
/// the lines and mails, not from this.
const POLL: Duration = Duration::from_millis(20);

/// MySQL command bytes (the first byte of a client exchange's payload).
const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1a;
const COM_RESET_CONNECTION: u8 = 0x1f;

// ---------------------------------------------------------------------------------------------
// What the step measured

pub enum ClusterStep {
    /// No MySQL answered (and `REQUIRE_MYSQL` was not set): why.
    Skipped(String),
    Measured {
        server: String,
        runs: Vec<FailoverRun>,
        balance: Balance,
    },
}

/// One failover run at one lease.
pub struct FailoverRun {
    pub lease: Duration,
    pub steady: Vec<MemberQueries>,
    pub window: Duration,
    /// Lines of the members in the window that announce a change (a transition, a new share, a
    /// new leader); the window is meant to have none.
    pub changes_in_window: Vec<String>,
    pub failovers: Vec<Failover>,
    pub mails: MailCount,
}

/// One leader kill.
pub struct Failover {
    /// SIGKILL → the first `LEADER` line of another member.
    pub to_leader: Duration,
    /// SIGKILL → the RECOVERED mail received in full.
    pub to_mail: Duration,
    pub terms: (u64, u64),
    /// Whether the killed leader was also the member probing the target.
    pub leader_probed: bool,
}

/// The mails of a failover run, by kind.
#[derive(Default)]
pub struct MailCount {
    pub outages: usize,
    pub recoveries: usize,
    pub member_lost: usize,
    pub other: Vec<String>,
    /// Transitions the run caused (each should be mailed once).
    pub expected: usize,
}

/// What one member sent its database in a window.
pub struct MemberQueries {
    pub member: String,
    pub leader: bool,
    /// Its heartbeats (`INSERT cluster_member` executions).
    pub beats: usize,
    /// `COM_QUERY` and `COM_STMT_EXECUTE`.
    pub statements: usize,
    /// Every other exchange (prepare, ping, reset, …).
    pub other: usize,
    /// Statements (and other exchanges, by command) by what they do.
    pub by_what: BTreeMap<String, usize>,
    pub connections: usize,
}

pub struct Balance {
    pub targets: usize,
    pub interval: Duration,
    pub rounds: usize,
    /// Each member's share from its last `owning targets=N` line, and its CPU over the window.
    pub shares: Vec<(String, usize, f64)>,
    /// Hits per target in the window: min, max, and targets not hit exactly `rounds` times.
    pub hits_min: usize,
    pub hits_max: usize,
    pub off: usize,
    /// Targets hit at least twice as often as one member would.
    pub doubled: usize,
    pub settle: Duration,
    pub queries: Vec<MemberQueries>,
    pub window: Duration,
    /// `state` rows of the sites and of the leader's global verdicts (region `global`) at the
    /// start and at the end of the window.
    pub rows: [StateRows; 2],
}

/// Rows of the `state` table by who wrote them.
#[derive(Clone, Copy, Default)]
pub struct StateRows {
    pub site: u64,
    pub global: u64,
}

// ---------------------------------------------------------------------------------------------
// The step

pub fn step_cluster(ctx: &Ctx<'_>) -> Result<ClusterStep> {
    let o = ctx.o;
    let server = match Server::connect(&o.mysql_url) {
        Ok(server) => server,
        Err(e) if o.require_mysql => {
            return Err(format!("MySQL is required (REQUIRE_MYSQL=1) but unreachable: {e}"))
        }
        Err(e) => {
            progress(&format!("  SKIPPED cluster: no MySQL: {e} (REQUIRE_MYSQL=1 fails instead)"));
            return Ok(ClusterStep::Skipped(e));
        }
    };
    let mut runs = Vec::new();
    for (n, &lease) in o.cluster_leases.iter().enumerate() {
        progress(&format!(
            "  failover: {MEMBERS} members, lease {}, {} leader kills",
            flag_duration(lease),
            o.cluster_failovers
        ));
        let db = Scratch::create(&server, n)?;
        runs.push(failover_run(ctx, &db, lease, &format!("cluster-{}", flag_duration(lease)))?);
    }
    progress(&format!(
        "  balance: {MEMBERS} members, {} targets every {}",
        o.cluster_targets,
        flag_duration(o.cluster_interval)
    ));
    let db = Scratch::create(&server, o.cluster_leases.len())?;
    let balance = balance_run(ctx, &db)?;
    Ok(ClusterStep::Measured { server: server.shown.clone(), runs, balance })
}

/// The failover run at `lease`: steady window, then the leader kills.
fn failover_run(
    ctx: &Ctx<'_>,
    db: &Scratch<'_>,
    lease: Duration,
    name: &str,
) -> Result<FailoverRun> {
    let (o, fake, sink) = (ctx.o, ctx.fake, ctx.sink);
    let interval = Duration::from_secs(1);
    let started = Instant::now();
    fake.switch("ok")?;
    let common = vec![
        "run".to_owned(),
        "--url".to_owned(),
        fake.health_url(),
        "--interval".to_owned(),
        flag_duration(interval),
        "--failures".to_owned(),
        o.failures.to_string(),
        "--successes".to_owned(),
        o.successes.to_string(),
        "--cluster".to_owned(),
        CLUSTER.to_owned(),
        "--lease".to_owned(),
        flag_duration(lease),
        "--smtp".to_owned(),
        format!("smtp://{}", sink.addr),
        "--support".to_owned(),
        "oncall@example.com".to_owned(),
        "--from".to_owned(),
        "api-monitor@example.com".to_owned(),
    ];
    let launch = Launch { ctx, db, args: common, name, lease };
    let mut members = launch.start_all()?;

    // Steady state: every member has its share and the target has been up for a few probes.
    sleep(lease / 3 * 2 + interval * (o.successes as u32 + 1));
    let t0 = Instant::now();
    let leader0 = db.leader()?;
    sleep(o.cluster_window);
    let t1 = Instant::now();
    let leader1 = db.leader()?;
    alive(&mut members)?;
    if leader0.as_ref().map(|l| &l.0) != leader1.as_ref().map(|l| &l.0) {
        progress("  the leader changed during the steady window");
    }
    let holder = leader1.map(|l| l.0).unwrap_or_default();
    let steady: Vec<MemberQueries> =
        members.iter().map(|m| m.queries(t0, t1, m.instance == holder)).collect();
    let changes_in_window = members
        .iter()
        .flat_map(|m| {
            m.lines_between(t0, t1, &CHANGES).into_iter().map(move |l| format!("{}: {l}", m.name))
        })
        .collect();

    let mut failovers = Vec::new();
    for i in 1..=o.cluster_failovers {
        let down = fake.switch("down")?;
        let generous = interval * (o.failures as u32 + 3) + lease * 2 + secs(30);
        wait_mail(&mut members, sink, down, "OUTAGE", down + generous)?;
        let (holder, term) = db.leader()?.ok_or("no leader row while a mail was sent")?;
        let Some(k) = members.iter().position(|m| !m.dead && m.instance == holder) else {
            return Err(format!("the leader {holder} is none of the running members"));
        };
        let leader_probed = members[k].owning().is_some_and(|(owned, _)| owned > 0);
        let killed = Instant::now();
        members[k].process.send(Signal::SIGKILL)?;
        members[k].dead = true;
        fake.switch("ok")?;
        let deadline = killed + lease * 3 + interval * (o.successes as u32 + 3) + secs(30);
        let mail = wait_mail(&mut members, sink, killed, "RECOVERED", deadline)?;
        let _ = members[k].process.exit_within(STOP_LIMIT);
        let (leader_at, new_term) = members
            .iter()
            .filter(|m| !m.dead)
            .find_map(|m| {
                m.lines.read(|lines| {
                    lines.iter().find(|(at, l)| *at >= killed && is_leader_line(l)).map(
                        |(at, l)| {
                            (*at, token(l, "term=").and_then(|t| t.parse().ok()).unwrap_or(0))
                        },
                    )
                })
            })
            .ok_or("the RECOVERED mail came with no member logging LEADER after the kill")?;
        let f = Failover {
            to_leader: leader_at.saturating_duration_since(killed),
            to_mail: mail - killed,
            terms: (term, new_term),
            leader_probed,
        };
        progress(&format!(
            "  kill {i}: new leader after {:.2} s (term {} → {}), RECOVERED mail after {:.2} s{}",
            f.to_leader.as_secs_f64(),
            term,
            new_term,
            f.to_mail.as_secs_f64(),
            if leader_probed { " (the killed leader probed the target)" } else { "" }
        ));
        failovers.push(f);
        // A new member for the dead one, so that every kill finds three.
        let replacement = launch.start(members.len() + 1)?;
        members.push(replacement);
        let deadline = Instant::now() + lease * 3 + secs(30);
        wait_members(
            &mut members,
            deadline,
            "the replacement's share among 3 live members",
            |all| all.last().and_then(Member::owning).is_some_and(|(_, live)| live == MEMBERS),
        )?;
    }
    // Late duplicates would come within a beat or two.
    sleep(lease / 3 * 2 + secs(1));
    alive(&mut members)?;
    let mails = count_mails(sink, started, 2 * o.cluster_failovers);
    for m in members.iter_mut().filter(|m| !m.dead) {
        m.process.terminate(STOP_LIMIT)?;
    }
    Ok(FailoverRun { lease, steady, window: t1 - t0, changes_in_window, failovers, mails })
}

/// Log lines that announce a change of the cluster or of a target.
const CHANGES: [&str; 6] =
    ["OUTAGE ", "RECOVERED ", "LEADER ", "owning targets=", "MEMBER ", "CUT OFF"];

/// The balance run: many targets shared by 3 members, seen from the API's side.
fn balance_run(ctx: &Ctx<'_>, db: &Scratch<'_>) -> Result<Balance> {
    let o = ctx.o;
    let (n, interval, rounds) = (o.cluster_targets, o.cluster_interval, o.cluster_rounds);
    let server = HealthServer::start(SERVER_WORKERS)?;
    let paths: Vec<String> = (0..n).map(|i| format!("/c/{i}")).collect();
    let config = ctx.work.join("cluster-balance.toml");
    let mut text = format!(
        "# Generated by bench.\ninterval = \"{}\"\ntimeout = \"{}\"\nfailures = 2\nsuccesses = 2\n",
        flag_duration(interval),
        flag_duration(interval.min(secs(5)))
    );
    for path in &paths {
        let _ = write!(text, "\n[[target]]\nurl = \"{}\"\n", server.url(path));
    }
    std::fs::write(&config, text).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let args = vec![
        "run".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
        "--cluster".to_owned(),
        CLUSTER.to_owned(),
    ];
    let lease = secs(15); // the default, which the members are not told
    let launch = Launch { ctx, db, args, name: "cluster-balance", lease };
    let started = Instant::now();
    let mut members = launch.start_all()?;
    // Settled: the shares add up to the targets, and each target has been probed since.
    let deadline = Instant::now() + lease * 2 + secs(60);
    wait_members(&mut members, deadline, "shares adding up to every target", |all| {
        all.iter().map(|m| m.owning().map_or(0, |(owned, _)| owned)).sum::<usize>() == n
    })?;
    let shared = Instant::now();
    sleep(interval * 2);
    let t0 = Instant::now();
    let rows0 = db.state_rows()?;
    let cpu0: Vec<u64> =
        members.iter().map(|m| testkit::procfs::cpu_ns(m.process.pid())).collect::<Result<_>>()?;
    sleep(interval * rounds as u32);
    let t1 = Instant::now();
    let cpu1: Vec<u64> =
        members.iter().map(|m| testkit::procfs::cpu_ns(m.process.pid())).collect::<Result<_>>()?;
    let rows1 = db.state_rows()?;
    alive(&mut members)?;
    let holder = db.leader()?.map(|l| l.0).unwrap_or_default();
    let queries = members.iter().map(|m| m.queries(t0, t1, m.instance == holder)).collect();
    let counts = server.hits.read(|hits| {
        let mut counts: HashMap<&str, usize> = paths.iter().map(|p| (p.as_str(), 0)).collect();
        for hit in hits.iter().filter(|h| h.at >= t0 && h.at < t1) {
            if let Some(c) = counts.get_mut(hit.path.as_str()) {
                *c += 1;
            }
        }
        counts.into_values().collect::<Vec<usize>>()
    });
    let shares = members
        .iter()
        .zip(cpu0.iter().zip(&cpu1))
        .map(|(m, (a, b))| {
            let owned = m.owning().map_or(0, |(owned, _)| owned);
            (m.name.clone(), owned, (b - a) as f64 / 1e9)
        })
        .collect();
    for m in &mut members {
        m.process.terminate(STOP_LIMIT)?;
    }
    Ok(Balance {
        targets: n,
        interval,
        rounds,
        shares,
        hits_min: counts.iter().copied().min().unwrap_or(0),
        hits_max: counts.iter().copied().max().unwrap_or(0),
        off: counts.iter().filter(|&&c| c != rounds).count(),
        doubled: counts.iter().filter(|&&c| c >= 2 * rounds).count(),
        settle: shared - started,
        queries,
        window: t1 - t0,
        rows: [rows0, rows1],
    })
}

// ---------------------------------------------------------------------------------------------
// Members

/// How the members of one run are started.
struct Launch<'a> {
    ctx: &'a Ctx<'a>,
    db: &'a Scratch<'a>,
    /// Everything but `--db`.
    args: Vec<String>,
    name: &'a str,
    lease: Duration,
}

impl Launch<'_> {
    /// The first member (which applies the schema and takes the first term), then the others;
    /// returns once all three have their share among three.
    fn start_all(&self) -> Result<Vec<Member>> {
        let mut members = vec![self.start(1)?];
        let deadline = Instant::now() + self.lease * 2 + secs(30);
        wait_members(&mut members, deadline, "the first member's LEADER line", |all| {
            all[0].lines.read(|lines| lines.iter().any(|(_, l)| is_leader_line(l)))
        })?;
        for i in 2..=MEMBERS {
            members.push(self.start(i)?);
        }
        let deadline = Instant::now() + self.lease * 3 + secs(60);
        wait_members(&mut members, deadline, "every member's share among 3", |all| {
            all.iter().all(|m| m.owning().is_some_and(|(_, live)| live == MEMBERS))
        })?;
        Ok(members)
    }

    fn start(&self, index: usize) -> Result<Member> {
        let name = format!("m{index}");
        let proxy = DbProxy::start(self.db.server.upstream)?;
        let mut args = self.args.clone();
        args.extend(["--db".to_owned(), self.db.url(proxy.port)]);
        let lines: Arc<Log<(Instant, String)>> = Log::new();
        let sink = Arc::clone(&lines);
        let log = self.ctx.work.join(format!("{}-{name}.log", self.name));
        let mut command = Command::new(&self.ctx.bins.monitor);
        command.args(&args).env_clear();
        let capture = Capture {
            tee: Some(log),
            on_line: Some(Box::new(move |at, line: &str| sink.push((at, line.to_owned())))),
            ..Capture::default()
        };
        let (mut process, stdout) = Process::spawn(command, capture)?;
        testkit::read_lines(stdout, |_, _| {});
        let deadline = Instant::now() + secs(30);
        let what = "its `cluster member … instance=ID` line";
        let instance = lines.wait_for(
            deadline,
            what,
            |lines| {
                lines
                    .iter()
                    .find_map(|(_, l)| {
                        l.contains("cluster member ").then(|| token(l, "instance=")).flatten()
                    })
                    .map(str::to_owned)
            },
            || process.alive(),
        )?;
        Ok(Member { name, process, lines, instance, proxy, dead: false })
    }
}

/// One `api-monitor run --cluster` and what it said and sent.
struct Member {
    name: String,
    process: Process,
    /// Its stderr lines, stamped when read.
    lines: Arc<Log<(Instant, String)>>,
    instance: String,
    proxy: DbProxy,
    /// SIGKILLed by the bench.
    dead: bool,
}

impl Member {
    /// `(owned, live members)` from its last `owning targets=` line (`live` is 0 on the line
    /// of a member cut off).
    fn owning(&self) -> Option<(usize, usize)> {
        self.lines.read(|lines| {
            lines.iter().rev().find(|(_, l)| l.contains("owning targets=")).map(|(_, l)| {
                let number = |key| token(l, key).and_then(|v| v.parse().ok()).unwrap_or(0);
                (number("targets="), number("members="))
            })
        })
    }

    /// Its lines in `[from, to)` that contain one of `needles`.
    fn lines_between(&self, from: Instant, to: Instant, needles: &[&str]) -> Vec<String> {
        self.lines.read(|lines| {
            lines
                .iter()
                .filter(|(at, l)| *at >= from && *at < to && needles.iter().any(|n| l.contains(n)))
                .map(|(_, l)| l.clone())
                .collect()
        })
    }

    /// What it sent its database in `[from, to)`.
    fn queries(&self, from: Instant, to: Instant, leader: bool) -> MemberQueries {
        let mut q = MemberQueries {
            member: self.name.clone(),
            leader,
            beats: 0,
            statements: 0,
            other: 0,
            by_what: BTreeMap::new(),
            connections: 0,
        };
        let mut connections = Vec::new();
        self.proxy.sent.read(|sent| {
            for s in sent.iter().filter(|s| s.at >= from && s.at < to) {
                connections.push(s.conn);
                let what = match s.code {
                    COM_QUERY | COM_STMT_EXECUTE => {
                        q.statements += 1;
                        q.beats += usize::from(s.what == "INSERT cluster_member");
                        s.what.clone()
                    }
                    code => {
                        q.other += 1;
                        format!("{} {}", command_name(code), s.what).trim_end().to_owned()
                    }
                };
                *q.by_what.entry(what).or_default() += 1;
            }
        });
        connections.sort_unstable();
        connections.dedup();
        q.connections = connections.len();
        q
    }
}

/// `LEADER cluster=… term=N instance=ID`, not `NOT LEADER …`.
fn is_leader_line(line: &str) -> bool {
    line.contains("LEADER cluster=") && !line.contains("NOT LEADER")
}

/// Whether every member the bench did not kill still runs.
fn alive(members: &mut [Member]) -> Result<()> {
    for m in members.iter_mut().filter(|m| !m.dead) {
        m.process.alive().map_err(|e| format!("member {}: {e}", m.name))?;
    }
    Ok(())
}

/// Polls until `ready(members)`, or `deadline` (an error with the members' last lines); a
/// member exiting on its own is an error.
fn wait_members(
    members: &mut [Member],
    deadline: Instant,
    what: &str,
    mut ready: impl FnMut(&[Member]) -> bool,
) -> Result<()> {
    loop {
        if ready(members) {
            return Ok(());
        }
        alive(members)?;
        if Instant::now() >= deadline {
            let tails: String = members
                .iter()
                .map(|m| format!("\n  {} ({}){}", m.name, m.instance, m.process.tail(6)))
                .collect();
            return Err(format!("timed out waiting for {what}{tails}"));
        }
        thread::sleep(POLL);
    }
}

/// When the sink received a mail whose subject contains `word`, received at or after `since`.
fn wait_mail(
    members: &mut [Member],
    sink: &testkit::SmtpServer,
    since: Instant,
    word: &str,
    deadline: Instant,
) -> Result<Instant> {
    let find = || {
        sink.mails.read(|mails| {
            mails.iter().find(|m| m.at >= since && m.subject().contains(word)).map(|m| m.at)
        })
    };
    let mut found = None;
    wait_members(members, deadline, &format!("the {word} email"), |_| {
        found = find();
        found.is_some()
    })
    .and_then(|()| found.ok_or_else(|| format!("no {word} email")))
}

fn count_mails(sink: &testkit::SmtpServer, since: Instant, expected: usize) -> MailCount {
    let mut count = MailCount { expected, ..MailCount::default() };
    for mail in sink.mails.snapshot().iter().filter(|m| m.at >= since) {
        let subject = mail.subject();
        if subject.contains("OUTAGE") {
            count.outages += 1;
        } else if subject.contains("RECOVERED") {
            count.recoveries += 1;
        } else if subject.contains("MEMBER LOST") {
            count.member_lost += 1;
        } else {
            count.other.push(subject);
        }
    }
    count
}

fn sleep(d: Duration) {
    thread::sleep(d);
}

// ---------------------------------------------------------------------------------------------
// The database server and the scratch databases

/// The MySQL server of the step, reached as its admin.
struct Server {
    /// Options with no default database.
    admin: mysql::Opts,
    upstream: SocketAddr,
    user: Option<String>,
    pass: Option<String>,
    /// The URL without its password, for the report.
    shown: String,
}

impl Server {
    /// Connects once, to know it answers.
    fn connect(url: &str) -> Result<Server> {
        let parsed = mysql::Opts::from_url(url).map_err(|e| format!("bad MySQL URL: {e}"))?;
        let host = parsed.get_ip_or_hostname().into_owned();
        let port = parsed.get_tcp_port();
        let upstream = (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve {host}:{port}"))?;
        let admin: mysql::Opts = mysql::OptsBuilder::from_opts(parsed.clone())
            .db_name(None::<String>)
            .prefer_socket(false)
            .tcp_connect_timeout(Some(secs(3)))
            .read_timeout(Some(secs(30)))
            .write_timeout(Some(secs(30)))
            .into();
        let shown = format!("mysql://{}@{host}:{port}", parsed.get_user().unwrap_or(""));
        mysql::Conn::new(admin.clone()).map_err(|e| format!("{shown}: {e}"))?;
        Ok(Server {
            admin,
            upstream,
            user: parsed.get_user().map(str::to_owned),
            pass: parsed.get_pass().map(str::to_owned),
            shown,
        })
    }
}

/// A database for one run, dropped with this value.
struct Scratch<'a> {
    server: &'a Server,
    name: String,
}

impl<'a> Scratch<'a> {
    fn create(server: &'a Server, n: usize) -> Result<Scratch<'a>> {
        let name = format!("bench_cluster_{}_{n}", std::process::id());
        let mut conn = mysql::Conn::new(server.admin.clone()).map_err(|e| e.to_string())?;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .and_then(|()| {
                conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            })
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        Ok(Scratch { server, name })
    }

    /// A member's URL: through the proxy on `port`, never by the Unix socket.
    fn url(&self, port: u16) -> String {
        member_url(self.server.user.as_deref(), self.server.pass.as_deref(), port, &self.name)
    }

    /// The leader row: holder and term.
    fn leader(&self) -> Result<Option<(String, u64)>> {
        let opts =
            mysql::OptsBuilder::from_opts(self.server.admin.clone()).db_name(Some(&self.name));
        let mut conn = mysql::Conn::new(opts).map_err(|e| format!("{}: {e}", self.name))?;
        conn.exec_first("SELECT holder, term FROM cluster_leader WHERE cluster = ?", (CLUSTER,))
            .map_err(|e| format!("reading the leader row: {e}"))
    }
}

impl Scratch<'_> {
    /// How many `state` rows the sites and the leader (region `global`) have written.
    fn state_rows(&self) -> Result<StateRows> {
        let opts =
            mysql::OptsBuilder::from_opts(self.server.admin.clone()).db_name(Some(&self.name));
        let mut conn = mysql::Conn::new(opts).map_err(|e| format!("{}: {e}", self.name))?;
        let counted: Option<(u64, u64)> = conn
            .query_first(
                "SELECT CAST(COALESCE(SUM(region <> 'global'), 0) AS UNSIGNED), \
                 CAST(COALESCE(SUM(region = 'global'), 0) AS UNSIGNED) FROM state",
            )
            .map_err(|e| format!("counting state rows: {e}"))?;
        let (site, global) = counted.unwrap_or_default();
        Ok(StateRows { site, global })
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let dropped = mysql::Conn::new(self.server.admin.clone())
            .and_then(|mut c| c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name)));
        if let Err(e) = dropped {
            progress(&format!("warning: could not drop the scratch database {}: {e}", self.name));
        }
    }
}

/// `mysql://USER[:PASS]@127.0.0.1:PORT/DB?prefer_socket=false`, user and password
/// percent-encoded.
fn member_url(user: Option<&str>, pass: Option<&str>, port: u16, db: &str) -> String {
    let mut auth = user.map(percent_encode).unwrap_or_default();
    if let Some(pass) = pass.filter(|p| !p.is_empty()) {
        auth = format!("{auth}:{}", percent_encode(pass));
    }
    let at = if auth.is_empty() { String::new() } else { format!("{auth}@") };
    format!("mysql://{at}127.0.0.1:{port}/{db}?prefer_socket=false")
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The counting proxy

/// One exchange a member started with its database: the first packet (sequence 0) of it.
#[derive(Clone, Debug)]
struct Sent {
    at: Instant,
    conn: usize,
    code: u8,
    /// For statements: the verb and the tables ([`summarize`]); for executions of a prepared
    /// statement, its prepared text's summary.
    what: String,
}

/// Forwards connections from a loopback port to the database, logging every exchange the
/// client starts. One per member.
struct DbProxy {
    port: u16,
    sent: Arc<Log<Sent>>,
    stopping: Arc<AtomicBool>,
}

impl DbProxy {
    fn start(upstream: SocketAddr) -> Result<DbProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let sent = Log::new();
        let stopping = Arc::new(AtomicBool::new(false));
        let (log, stop) = (Arc::clone(&sent), Arc::clone(&stopping));
        thread::spawn(move || {
            let ids = AtomicUsize::new(0);
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let conn = ids.fetch_add(1, Ordering::SeqCst);
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (log, prepared) = (Arc::clone(&log), Shared::default());
                let prepared2 = Arc::clone(&prepared);
                thread::spawn(move || requests(client, server, conn, &log, &prepared));
                thread::spawn(move || responses(server2, client2, &prepared2));
            }
        });
        Ok(DbProxy { port, sent, stopping })
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The prepared statements of one connection, shared by its two directions: the client's
/// `COM_STMT_PREPARE` waits for the server's answer, which carries the statement id that its
/// executions name.
#[derive(Default)]
struct Prepared {
    /// The summary of the statement whose prepare the server has not answered yet.
    pending: Option<String>,
    by_id: HashMap<u32, String>,
}

type Shared = Arc<std::sync::Mutex<Prepared>>;

fn lock(prepared: &Shared) -> std::sync::MutexGuard<'_, Prepared> {
    prepared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The client → server direction: each exchange logged, then forwarded (so a prepare is
/// pending before the server can answer it).
fn requests(from: TcpStream, to: TcpStream, conn: usize, log: &Log<Sent>, prepared: &Shared) {
    pump(from, to, |seq, payload| {
        let at = Instant::now();
        let Some((&code, rest)) = payload.split_first().filter(|_| seq == 0) else {
            return;
        };
        let what = match code {
            COM_QUERY => summarize(&String::from_utf8_lossy(rest)),
            COM_STMT_PREPARE => {
                let what = summarize(&String::from_utf8_lossy(rest));
                lock(prepared).pending = Some(what.clone());
                what
            }
            COM_STMT_EXECUTE | COM_STMT_CLOSE | COM_STMT_RESET => rest
                .get(..4)
                .map(|id| u32::from_le_bytes([id[0], id[1], id[2], id[3]]))
                .and_then(|id| lock(prepared).by_id.get(&id).cloned())
                .unwrap_or_else(|| "(unknown statement)".into()),
            _ => String::new(),
        };
        log.push(Sent { at, conn, code, what });
    });
}

/// The server → client direction: read for the answers to prepares, then forwarded (so the
/// statement id is known before the client can execute it). The client waits for each answer
/// before its next command, so the first packet completed after a prepare was sent is its
/// answer: `0x00`, then the id (4 bytes, little-endian), or an error.
fn responses(from: TcpStream, to: TcpStream, prepared: &Shared) {
    pump(from, to, |_, payload| {
        let mut p = lock(prepared);
        let Some(what) = p.pending.take() else { return };
        if let [0x00, a, b, c, d, ..] = payload {
            p.by_id.insert(u32::from_le_bytes([*a, *b, *c, *d]), what);
        }
    });
}

/// One direction of the proxy: each chunk read from `from` is split into packets for `packet`
/// (sequence number, payload head) and then forwarded to `to`, until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, mut packet: impl FnMut(u8, &[u8])) {
    let mut packets = Packets::default();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        packets.feed(&buf[..n], &mut packet);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Splits a MySQL byte stream into packets (3-byte little-endian length, 1-byte sequence
/// number, payload), whatever the chunks it arrives in. Pure.
#[derive(Default)]
struct Packets {
    header: Vec<u8>,
    /// Payload bytes of the current packet still to come.
    left: usize,
    /// The start of the current payload (enough to read a command and its statement).
    head: Vec<u8>,
}

/// How much of each payload is kept.
const KEEP: usize = 1024;

impl Packets {
    /// Feeds `chunk`; calls `packet(seq, payload start)` for each packet completed by it.
    fn feed(&mut self, mut chunk: &[u8], mut packet: impl FnMut(u8, &[u8])) {
        while !chunk.is_empty() {
            if self.header.len() < 4 {
                let take = (4 - self.header.len()).min(chunk.len());
                self.header.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.header.len() == 4 {
                    let h = &self.header;
                    self.left =
                        usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
                    self.head.clear();
                    if self.left == 0 {
                        packet(self.header[3], &[]);
                        self.header.clear();
                    }
                }
                continue;
            }
            let take = self.left.min(chunk.len());
            let keep = KEEP.saturating_sub(self.head.len()).min(take);
            self.head.extend_from_slice(&chunk[..keep]);
            self.left -= take;
            chunk = &chunk[take..];
            if self.left == 0 {
                packet(self.header[3], &self.head);
                self.header.clear();
            }
        }
    }
}

/// A statement's verb and the tables it names: `INSERT cluster_member`, `SELECT
/// cluster_member+cluster_leader`, `COMMIT`.
fn summarize(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let Some(verb) = words.first() else { return "(empty)".into() };
    let verb = verb.to_ascii_uppercase();
    let mut tables: Vec<String> = Vec::new();
    for pair in words.windows(2) {
        let keyword = pair[0].to_ascii_uppercase();
        if ["FROM", "INTO", "JOIN"].contains(&keyword.as_str()) && !pair[1].starts_with('(') {
            let table = pair[1].trim_matches(|c: char| c == '`' || c == ',' || c == ';').to_owned();
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
    }
    if verb == "UPDATE" {
        if let Some(table) = words.get(1) {
            let table = table.trim_matches('`').to_owned();
            if !tables.contains(&table) {
                tables.insert(0, table);
            }
        }
    }
    match (verb.as_str(), tables.is_empty()) {
        (_, true) => {
            words.iter().take(2).map(|w| w.to_ascii_uppercase()).collect::<Vec<_>>().join(" ")
        }
        _ => format!("{verb} {}", tables.join("+")),
    }
}

fn command_name(code: u8) -> &'static str {
    match code {
        COM_QUIT => "QUIT",
        COM_PING => "PING",
        COM_STMT_PREPARE => "PREPARE",
        COM_STMT_CLOSE => "CLOSE",
        COM_STMT_RESET => "RESET STMT",
        COM_RESET_CONNECTION => "RESET CONNECTION",
        _ => "OTHER",
    }
}

// ---------------------------------------------------------------------------------------------
// The report

pub fn render(w: &mut String, o: &crate::options::Options, step: &ClusterStep) {
    let _ = writeln!(w, "## Cluster: {MEMBERS} members, one database\n");
    let (server, runs, b) = match step {
        ClusterStep::Skipped(why) => {
            let _ = writeln!(
                w,
                "**THE CLUSTER STEP WAS NOT MEASURED: no MySQL/MariaDB answered ({why}). Start \
                 one or set TEST_MYSQL_URL; REQUIRE_MYSQL=1 makes this a failure.**\n"
            );
            return;
        }
        ClusterStep::Measured { server, runs, balance } => (server, runs, balance),
    };
    let _ = writeln!(
        w,
        "Database: {server} (a scratch database per run, dropped after it); each member talks to \
         it through a counting proxy of the bench's.\n"
    );
    let _ = writeln!(w, "### Failover: leader SIGKILLed during an outage\n");
    let _ = writeln!(w, "| lease (beat) | kills | kill → next LEADER line min / median / max | kill → RECOVERED mail min / median / max | terms | kills where the leader also probed the target | mails: OUTAGE / RECOVERED (expected each) / MEMBER LOST / other |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let secs_of =
        |s: &Spread| format!("{:.2} / {:.2} / {:.2} s", s.min / 1e3, s.median / 1e3, s.max / 1e3);
    for r in runs {
        let leader = spread(&r.failovers.iter().map(|f| ms(f.to_leader)).collect::<Vec<_>>());
        let mail = spread(&r.failovers.iter().map(|f| ms(f.to_mail)).collect::<Vec<_>>());
        let m = &r.mails;
        let each = m.expected / 2;
        let flag = if m.outages != each || m.recoveries != each {
            " **≠ one per transition**"
        } else {
            ""
        };
        let _ = writeln!(
            w,
            "| {} ({}) | {} | {} | {} | {} | {} of {} | {} / {} ({each}){flag} / {} / {} |",
            flag_duration(r.lease),
            flag_duration(r.lease / 3),
            r.failovers.len(),
            secs_of(&leader),
            secs_of(&mail),
            r.failovers
                .iter()
                .map(|f| format!("{}→{}", f.terms.0, f.terms.1))
                .collect::<Vec<_>>()
                .join(", "),
            r.failovers.iter().filter(|f| f.leader_probed).count(),
            r.failovers.len(),
            m.outages,
            m.recoveries,
            m.member_lost,
            if m.other.is_empty() { "0".to_owned() } else { m.other.join("; ") }
        );
    }
    let _ = writeln!(
        w,
        "\n1 fake-api target at `--interval 1s`, failures {} / successes {}; 3 members in one site \
         (quorum: majority of 1 site). The API goes down; when the OUTAGE mail is in, the leader \
         (`cluster_leader.holder`) is SIGKILLed and the API put back up at once; a new member \
         replaces the dead one before the next kill. Failover ≈ the lease (the dead lease must \
         expire, seen at the next beat) + the recovery's detection ({} probes) when the dead \
         leader was also the target's prober, else mostly in parallel with it.\n",
        o.failures, o.successes, o.successes
    );
    let _ = writeln!(w, "### Queries per member in steady state\n");
    let _ = writeln!(w, "| run | member | role | window | beats | statements | per beat | per probe interval (1 s) | connections | statements (and other exchanges) in the window |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let name = format!("failover, lease {}", flag_duration(r.lease));
        queries_rows(w, &name, &r.steady, r.window, secs(1));
    }
    queries_rows(
        w,
        &format!("balance, {} targets, lease 15s", b.targets),
        &b.queries,
        b.window,
        b.interval,
    );
    for r in runs {
        if !r.changes_in_window.is_empty() {
            let _ = writeln!(
                w,
                "\n**Changes logged during the steady window of lease {} (the window was meant to have none):**\n\n```\n{}\n```",
                flag_duration(r.lease),
                r.changes_in_window.join("\n")
            );
        }
    }
    let _ = writeln!(
        w,
        "\nCounted at each member's proxy: every exchange a member starts (the first packet, sequence 0, \
         of the MySQL client protocol); statements = `COM_QUERY` + `COM_STMT_EXECUTE`; a beat = one \
         `INSERT cluster_member` (the heartbeat). The goal of the issue is ≤ 2 statements per member per \
         interval plus one per transition.\n"
    );
    let _ = writeln!(
        w,
        "### Balance: {MEMBERS} members × {} targets every {}\n",
        b.targets,
        flag_duration(b.interval)
    );
    let _ = writeln!(
        w,
        "| member | targets owned (last `owning targets=` line) | share | CPU in the window |"
    );
    let _ = writeln!(w, "|---|---|---|---|");
    for (name, owned, cpu) in &b.shares {
        let _ = writeln!(
            w,
            "| {name} | {owned} | {:.1} % | {:.2} s |",
            *owned as f64 * 100.0 / b.targets.max(1) as f64,
            cpu
        );
    }
    let owned: Vec<usize> = b.shares.iter().map(|s| s.1).collect();
    let (lo, hi) =
        (owned.iter().min().copied().unwrap_or(0), owned.iter().max().copied().unwrap_or(0));
    let _ = writeln!(
        w,
        "\n- targets per member min / max: {lo} / {hi} (even share {:.0}); shares settled {:.1} s after the first member started",
        b.targets as f64 / MEMBERS as f64,
        b.settle.as_secs_f64()
    );
    let _ = writeln!(
        w,
        "- hits per target over {} intervals ({:.1} s) at the API: min {} / max {}; targets not hit exactly {} times: {}; targets hit at least twice as often (probed by two members): {}{}",
        b.rounds,
        b.window.as_secs_f64(),
        b.hits_min,
        b.hits_max,
        b.rounds,
        b.off,
        b.doubled,
        if b.doubled > 0 { " — **some targets are probed by more than one member**" } else { "" }
    );
    let [r0, r1] = b.rows;
    let _ = writeln!(
        w,
        "- `state` rows at the start / end of the window: the sites' {} / {}, the leader's global verdicts {} / {} (of {} targets){}",
        r0.site,
        r1.site,
        r0.global,
        r1.global,
        b.targets,
        if r0.global < b.targets as u64 {
            " — **the leader was still recording the targets' first global state during the window**: its statements above include those writes; the followers' are steady"
        } else {
            ""
        }
    );
    let _ = writeln!(
        w,
        "- the API is the bench's in-process server; a target whose schedule falls on the window's edge can show one hit more or less without being probed twice.\n"
    );
}

fn queries_rows(
    w: &mut String,
    run: &str,
    qs: &[MemberQueries],
    window: Duration,
    interval: Duration,
) {
    let intervals = window.as_secs_f64() / interval.as_secs_f64();
    for q in qs {
        let what: Vec<String> = q.by_what.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        let _ = writeln!(
            w,
            "| {run} | {} | {} | {:.1} s | {} | {} | {:.2} | {:.2} | {} | {}{} |",
            q.member,
            if q.leader { "leader" } else { "follower" },
            window.as_secs_f64(),
            q.beats,
            q.statements,
            q.statements as f64 / q.beats.max(1) as f64,
            q.statements as f64 / intervals,
            q.connections,
            what.join(", "),
            if q.other > 0 { format!(" ({} other exchanges)", q.other) } else { String::new() }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_split_whatever_the_chunks() {
        // COM_QUERY "SELECT 1" (seq 0), then an empty packet (seq 3), then COM_QUIT (seq 0).
        let mut stream = vec![9, 0, 0, 0, COM_QUERY];
        stream.extend_from_slice(b"SELECT 1");
        stream.extend_from_slice(&[0, 0, 0, 3, 1, 0, 0, 0, COM_QUIT]);
        for size in [1, 2, 3, 5, 7, stream.len()] {
            let mut packets = Packets::default();
            let mut seen = Vec::new();
            for chunk in stream.chunks(size) {
                packets.feed(chunk, |seq, payload| seen.push((seq, payload.to_vec())));
            }
            let mut query = vec![COM_QUERY];
            query.extend_from_slice(b"SELECT 1");
            assert_eq!(seen, [(0, query), (3, vec![]), (0, vec![COM_QUIT])], "chunks of {size}");
        }
    }

    #[test]
    fn a_long_payload_is_skipped_past_its_kept_start() {
        let mut stream = vec![0x00, 0x08, 0, 0]; // 2048 bytes, seq 0
        stream.extend(std::iter::repeat_n(b'x', 2048));
        stream.extend_from_slice(&[1, 0, 0, 0, COM_PING]);
        let mut packets = Packets::default();
        let mut seen = Vec::new();
        packets.feed(&stream, |seq, payload| seen.push((seq, payload.len())));
        assert_eq!(seen, [(0, KEEP), (0, 1)], "the kept start, then the next packet intact");
    }

    #[test]
    fn statements_are_summarized_by_verb_and_tables() {
        let cases = [
            (
                "INSERT INTO cluster_member (cluster, instance_id) VALUES (?, ?) ON DUPLICATE KEY UPDATE site = ?",
                "INSERT cluster_member",
            ),
            (
                "SELECT 0, id FROM cluster_member WHERE cluster = ? UNION ALL SELECT 1, holder FROM cluster_leader WHERE cluster = ?",
                "SELECT cluster_member+cluster_leader",
            ),
            ("UPDATE cluster_leader SET heartbeat_at = NOW(6) WHERE x", "UPDATE cluster_leader"),
            (
                "SELECT s.target FROM state s JOIN (SELECT MAX(id) AS id FROM state WHERE region IN (?) GROUP BY target) latest ON latest.id = s.id",
                "SELECT state",
            ),
            ("START TRANSACTION", "START TRANSACTION"),
            ("commit", "COMMIT"),
            ("SET time_zone = '+00:00'", "SET TIME_ZONE"),
        ];
        for (sql, expected) in cases {
            assert_eq!(summarize(sql), expected, "{sql}");
        }
    }

    #[test]
    fn member_urls_go_through_the_proxy_by_tcp() {
        assert_eq!(
            member_url(Some("root"), None, 4000, "db"),
            "mysql://root@127.0.0.1:4000/db?prefer_socket=false"
        );
        assert_eq!(
            member_url(Some("u"), Some("p@s:/w"), 1, "d"),
            "mysql://u:p%40s%3A%2Fw@127.0.0.1:1/d?prefer_socket=false"
        );
        assert_eq!(member_url(None, None, 1, "d"), "mysql://127.0.0.1:1/d?prefer_socket=false");
    }
}
