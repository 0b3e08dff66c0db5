//! What the monitor knows about itself, for `--listen`: Prometheus metrics and liveness.
//!
//! Operators scrape the monitor into Prometheus/Grafana and point a supervisor at `/healthz`.
//! Both answers come from one in-memory [`Registry`] that the probe loops feed as they go, so
//! serving them never touches the database, the network or a loop's thread: a scrape cannot
//! slow a probe down, and a slow database cannot make a scrape hang.
//!
//! Each loop (one per target and region) gets its own [`WatchMetrics`] handle from
//! [`Registry::register`]. The handle owns the loop's series behind a mutex of its own, so a
//! probe costs one uncontended lock, a few additions and no allocation; only a scrape walks all
//! series. A handle also makes "metrics of a loop nobody registered" impossible by type.
//!
//! Rendering follows the Prometheus text exposition format 0.0.4; the choices it leaves open:
//! - `api_monitor_up` and `api_monitor_last_transition_timestamp_seconds` are *absent* until
//!   the loop knows a settled state (resumed from the database or reached by the detector).
//!   A value of `0` therefore always means a confirmed outage, never "not known yet", and sums
//!   and averages over `api_monitor_up` stay meaningful (no `-1`, no `NaN`).
//! - Counters count what happened since this process started; Prometheus handles the reset of
//!   a restart. A resumed outage is not a new one: only a transition increments
//!   `api_monitor_outages_total`.
//! - Every probe, blind ones included, is one observation of the duration histogram, so the
//!   histogram's `_count` equals the sum of `api_monitor_probes_total` over `result`.
//! - A metric family without samples (no loop registered yet) is left out entirely.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::detector::{Health, Transition};
use crate::probe::Outcome;
use crate::runtime::probing::Lateness;
use crate::timestamp::Timestamp;

/// Upper bounds of the probe duration histogram, as rendered in `le` and as durations. From
/// 5 ms (a loopback answer) to 10 s (past any sensible probe timeout).
const BUCKETS: [(&str, Duration); 11] = [
    ("0.005", Duration::from_millis(5)),
    ("0.01", Duration::from_millis(10)),
    ("0.025", Duration::from_millis(25)),
    ("0.05", Duration::from_millis(50)),
    ("0.1", Duration::from_millis(100)),
    ("0.25", Duration::from_millis(250)),
    ("0.5", Duration::from_millis(500)),
    ("1", Duration::from_secs(1)),
    ("2.5", Duration::from_millis(2_500)),
    ("5", Duration::from_secs(5)),
    ("10", Duration::from_secs(10)),
];

/// How many of a loop's intervals may pass without a probe before `/healthz` calls it stuck
/// (on top of one probe timeout, the longest a healthy probe may take).
pub const STALL_INTERVALS: u32 = 3;

/// The `result` label of `api_monitor_probes_total`, in rendering order.
const RESULTS: [&str; 3] = ["ok", "failed", "blind"];

/// Every loop's metrics and the outbox size, shared by the loops and the HTTP server.
#[derive(Debug, Default)]
pub struct Registry {
    /// One entry per registered loop, kept sorted by (target, region) so renders are stable.
    series: Mutex<Vec<Arc<Series>>>,
    /// Unsent notifications, as last reported by [`Registry::set_pending_notifications`].
    pending: AtomicU64,
    /// The most probes in flight (`--concurrency`), and the count of late starts.
    workers: AtomicU64,
    lateness: Arc<Lateness>,
    /// Notifications refused for good (`api_monitor_notifications_dead_total`).
    dead: AtomicU64,
    /// Why the monitor cannot decide anything yet (waiting for the database, or a standby),
    /// for `/healthz`.
    waiting: Mutex<Option<String>>,
    /// Outcomes handed to the state owner and outcomes it has handled, for `/healthz`.
    state: StateQueue,
    /// Cluster mode's gauges; `None` for a single instance (then not rendered).
    cluster: Mutex<Option<ClusterGauges>>,
}

/// What `/metrics` says of the cluster, as the state owner last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterGauges {
    pub site: String,
    /// Live members of the whole cluster.
    pub members: u64,
    /// The term this member leads under; `None` while it follows.
    pub leading: Option<u64>,
    /// The leader row's term as last read.
    pub term: u64,
    /// Targets this member probes.
    pub owned: u64,
}

/// How far the state owner is behind the probe workers. A state owner that has outcomes
/// waiting and has handled none for [`STATE_STALL_AFTER`] is stuck (the loops would still
/// look alive: workers feed their liveness themselves).
#[derive(Debug)]
struct StateQueue {
    sent: AtomicU64,
    handled: AtomicU64,
    /// When it last handled one (at first: when the registry was made).
    last_handled: Mutex<Instant>,
}

impl Default for StateQueue {
    fn default() -> Self {
        StateQueue {
            sent: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            last_handled: Mutex::new(Instant::now()),
        }
    }
}

/// How long the state owner may leave waiting outcomes unhandled before `/healthz` calls it
/// stuck: longer than any database or disk wait it is allowed (10 s timeouts, with a retry).
pub const STATE_STALL_AFTER: Duration = Duration::from_secs(60);

/// One loop's series. The labels and limits are fixed at registration; the counts change.
#[derive(Debug)]
struct Series {
    target: String,
    region: String,
    /// Silence after which the loop counts as stuck: `3 × interval + timeout`.
    stall_after: Duration,
    counts: Mutex<Counts>,
}

/// The changing part of a series: plain numbers, copied out whole for a consistent render.
#[derive(Clone, Copy, Debug)]
struct Counts {
    /// When the loop last showed it was alive: its registration, then each probe.
    last_tick: Instant,
    /// The settled state and since when; `None` until one is known.
    state: Option<(Health, Timestamp)>,
    /// Probes by result, in [`RESULTS`] order.
    probes: [u64; 3],
    /// Probes per histogram bucket, *not* cumulative (the render accumulates); the last slot
    /// holds the probes slower than every bound.
    buckets: [u64; BUCKETS.len() + 1],
    /// Total duration of all probes.
    duration_sum: Duration,
    outages: u64,
    consecutive_failures: u32,
    /// Failed and blind probes by [`crate::probe::Reason::kind`], in [`KINDS`] order.
    failures: [u64; KINDS.len()],
}

/// The `reason` label of `api_monitor_probe_failures_total`: every
/// [`crate::probe::Reason::kind`], in rendering order.
const KINDS: [&str; 14] = [
    "timeout",
    "refused",
    "reset",
    "closed",
    "dns",
    "tls",
    "http_status",
    "content_type",
    "body",
    "status",
    "redirect",
    "proxy",
    "slow",
    "other",
];

impl Series {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // A panic while holding this lock leaves plain numbers behind: still worth serving.
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A loop's handle on its series, from [`Registry::register`]. Cheap to clone.
///
/// Call order in a loop: [`WatchMetrics::resume`] once if the database knows a last state,
/// then [`WatchMetrics::probe`] after every probe and [`WatchMetrics::transition`] for every
/// transition the detector returns.
#[derive(Clone, Debug)]
pub struct WatchMetrics {
    series: Arc<Series>,
}

impl WatchMetrics {
    /// Counts one finished probe and marks the loop alive at `at` (the loop's liveness tick).
    ///
    /// `api_monitor_consecutive_failures` follows the detector's rule: a failure adds one, a
    /// healthy probe resets it, a blind probe (the region's proxy failed) leaves it as it is.
    pub fn probe(&self, outcome: &Outcome, at: Instant) {
        let latency = outcome.latency();
        let bucket = BUCKETS.iter().position(|&(_, bound)| latency <= bound);
        let mut counts = self.series.lock();
        counts.last_tick = counts.last_tick.max(at);
        let result = match outcome {
            Outcome::Healthy { .. } => {
                counts.consecutive_failures = 0;
                0
            }
            Outcome::Failed { .. } => {
                counts.consecutive_failures = counts.consecutive_failures.saturating_add(1);
                1
            }
            Outcome::Blind { .. } => 2,
        };
        counts.probes[result] += 1;
        if let Some(reason) = outcome.reason() {
            let kind = KINDS.iter().position(|&k| k == reason.kind());
            counts.failures[kind.unwrap_or(KINDS.len() - 1)] += 1;
        }
        counts.buckets[bucket.unwrap_or(BUCKETS.len())] += 1;
        counts.duration_sum = counts.duration_sum.saturating_add(latency);
    }

    /// In cluster mode, the slot came due but another member of the site probes it: the
    /// schedule is alive (for `/healthz`), and nothing was probed.
    pub fn elsewhere(&self, at: Instant) {
        let mut counts = self.series.lock();
        counts.last_tick = counts.last_tick.max(at);
    }

    /// Sets the state the loop resumed from (the last recorded row) without counting an
    /// outage: a restart during an outage continues it.
    pub fn resume(&self, health: Health, since: Timestamp) {
        self.series.lock().state = Some((health, since));
    }

    /// Records a transition the detector returned; a transition to `Down` is one more outage.
    /// The transition's `since` (when its streak began, as the database records it) becomes
    /// `api_monitor_last_transition_timestamp_seconds`.
    pub fn transition(&self, transition: &Transition) {
        let mut counts = self.series.lock();
        counts.state = Some((transition.to, transition.since));
        if transition.to == Health::Down {
            counts.outages += 1;
        }
    }
}

/// Loops that have not probed for longer than they may: why `/healthz` answers 503.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_stalls(.0))]
pub struct Stalled(pub Vec<Stall>);

/// What `/healthz` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Healthz {
    /// 200 `ok`: every loop probes and the monitor decides.
    Ok,
    /// 200 with the reason: alive, and deliberately not deciding (a standby instance).
    Standby(String),
    /// 503: loops are stuck, or the monitor cannot decide yet (waiting for the database).
    Unwell(String),
}

/// One loop that stopped ticking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    pub target: String,
    pub region: String,
    /// Time since its last probe (or its registration).
    pub silent_for: Duration,
    /// How long it may be silent: `3 × interval + timeout`.
    pub limit: Duration,
}

fn describe_stalls(stalls: &[Stall]) -> String {
    let each: Vec<String> = stalls
        .iter()
        .map(|s| {
            format!(
                "probe loop stuck: target={} region={} no probe for {} (limit {})",
                one_line(&s.target),
                one_line(&s.region),
                millis(s.silent_for),
                millis(s.limit)
            )
        })
        .collect();
    each.join("; ")
}

/// `d` to the millisecond, as `humantime` writes it (`3s 500ms`): a limit must read exactly.
fn millis(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// `text` without control characters, so a stall report stays one line.
fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops the series of every pair not in `pairs` `(target, region)`: after a reload
    /// removed targets or regions, `/metrics` and `/healthz` no longer show them.
    pub fn keep_only(&self, pairs: &[(String, String)]) {
        self.lock().retain(|s| pairs.iter().any(|(t, r)| *t == s.target && *r == s.region));
    }

    /// Adds the series of the loop watching `target` from `region`, which probes every
    /// `interval` with probes lasting at most `timeout`; `at` is when the loop starts (its first
    /// liveness tick). Registering a pair twice returns the existing series, so a render never
    /// holds duplicate samples.
    pub fn register(
        &self,
        target: &str,
        region: &str,
        interval: Duration,
        timeout: Duration,
        at: Instant,
    ) -> WatchMetrics {
        let mut all = self.lock();
        let position =
            all.binary_search_by(|s| (s.target.as_str(), s.region.as_str()).cmp(&(target, region)));
        let stall_after = interval.saturating_mul(STALL_INTERVALS).saturating_add(timeout);
        let index = match position {
            Ok(found) if all[found].stall_after == stall_after => {
                return WatchMetrics { series: Arc::clone(&all[found]) }
            }
            // Re-registered with another interval or timeout (a reload): a new series, so
            // `/healthz` judges the loop by its new pace (its counters start again).
            Ok(found) => {
                all.remove(found);
                found
            }
            Err(insert_at) => insert_at,
        };
        let series = Arc::new(Series {
            target: target.to_owned(),
            region: region.to_owned(),
            stall_after,
            counts: Mutex::new(Counts {
                last_tick: at,
                state: None,
                probes: [0; 3],
                buckets: [0; BUCKETS.len() + 1],
                duration_sum: Duration::ZERO,
                outages: 0,
                consecutive_failures: 0,
                failures: [0; KINDS.len()],
            }),
        });
        all.insert(index, Arc::clone(&series));
        WatchMetrics { series }
    }

    /// Sets `api_monitor_notifications_pending`: the emails in the outbox not yet accepted by
    /// the SMTP server. A pushed value rather than a callback into the outbox, so a scrape
    /// never waits on the lock the database work holds.
    pub fn set_pending_notifications(&self, n: usize) {
        self.pending.store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Turns cluster gauges on (cluster mode) for `site`.
    pub fn set_cluster_site(&self, site: &str) {
        self.cluster_gauges(|g| g.site = site.to_owned());
    }

    /// `api_monitor_cluster_members`: live members of the cluster.
    pub fn set_cluster_members(&self, n: usize) {
        self.cluster_gauges(|g| g.members = u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// `api_monitor_cluster_leader` (1 while `Some`) and, while leading, its term.
    pub fn set_cluster_lead(&self, term: Option<u64>) {
        self.cluster_gauges(|g| {
            g.leading = term;
            if let Some(t) = term {
                g.term = g.term.max(t);
            }
        });
    }

    /// `api_monitor_cluster_term`: the leader row's term as last read.
    pub fn set_cluster_term(&self, term: u64) {
        self.cluster_gauges(|g| g.term = term);
    }

    /// `api_monitor_cluster_targets_owned{site}`: targets this member probes.
    pub fn set_owned_targets(&self, n: usize) {
        self.cluster_gauges(|g| g.owned = u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The cluster gauges as last set; `None` for a single instance.
    pub fn cluster(&self) -> Option<ClusterGauges> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn cluster_gauges(&self, change: impl FnOnce(&mut ClusterGauges)) {
        let mut gauges = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        change(gauges.get_or_insert_with(ClusterGauges::default));
    }

    /// Sets `api_monitor_probe_workers_max`: the most probes in flight (`--concurrency`; the
    /// name is from when probes ran on workers, kept for dashboards).
    pub fn set_workers(&self, n: usize) {
        self.workers.store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts a notification refused for good (`api_monitor_notifications_dead_total`).
    pub fn count_dead_notification(&self) {
        self.dead.fetch_add(1, Ordering::Relaxed);
    }

    /// Says why the monitor cannot decide yet (`None`: it can). A reason starting with
    /// `standby` keeps `/healthz` at 200; any other makes it 503.
    pub fn set_waiting(&self, why: Option<String>) {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// The probing thread handed `n` outcomes to the state owner.
    pub fn outcomes_sent(&self, n: usize) {
        self.state.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The state owner handled an outcome at `at`.
    pub fn outcome_handled(&self, at: Instant) {
        *self.state.last_handled.lock().unwrap_or_else(|p| p.into_inner()) = at;
        self.state.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// Why the state owner looks stuck at `now`, if it does.
    fn state_stuck(&self, now: Instant) -> Option<String> {
        let waiting = self
            .state
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.state.handled.load(Ordering::Relaxed));
        let last = *self.state.last_handled.lock().unwrap_or_else(|p| p.into_inner());
        let idle = now.saturating_duration_since(last);
        (waiting > 0 && idle > STATE_STALL_AFTER).then(|| {
            format!(
                "state owner stuck: {waiting} probe outcome(s) waiting, none handled for {} \
                 (limit {})",
                millis(idle),
                millis(STATE_STALL_AFTER)
            )
        })
    }

    /// `/healthz`: stuck loops or a stuck state owner first, then whether the monitor is
    /// waiting or a standby.
    pub fn health(&self, now: Instant) -> Healthz {
        if let Some(stuck) = self.state_stuck(now) {
            return Healthz::Unwell(stuck);
        }
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match (self.healthz(now), waiting) {
            (Err(stalled), Some(w)) => Healthz::Unwell(format!("{w}; {stalled}")),
            (Err(stalled), None) => Healthz::Unwell(stalled.to_string()),
            (Ok(()), Some(w)) if w.starts_with("standby") => Healthz::Standby(w),
            (Ok(()), Some(w)) => Healthz::Unwell(w),
            (Ok(()), None) => Healthz::Ok,
        }
    }

    /// Where the probing thread counts late starts (`api_monitor_probes_late_total`).
    pub fn lateness(&self) -> Arc<Lateness> {
        Arc::clone(&self.lateness)
    }

    /// Whether every registered loop probed within `3 × interval + timeout` of `now`; the
    /// error names each stuck loop. With no loop registered there is nothing stuck.
    pub fn healthz(&self, now: Instant) -> Result<(), Stalled> {
        let stalls: Vec<Stall> = self
            .lock()
            .iter()
            .filter_map(|series| {
                let silent_for = now.saturating_duration_since(series.lock().last_tick);
                (silent_for > series.stall_after).then(|| Stall {
                    target: series.target.clone(),
                    region: series.region.clone(),
                    silent_for,
                    limit: series.stall_after,
                })
            })
            .collect();
        if stalls.is_empty() {
            Ok(())
        } else {
            Err(Stalled(stalls))
        }
    }

    /// Every metric in the Prometheus text exposition format 0.0.4 (see the module doc).
    pub fn render(&self) -> String {
        // Copy the numbers out first: each series is locked only for a copy, never while the
        // text is formatted.
        let snapshot: Vec<(Arc<Series>, Counts)> =
            self.lock().iter().map(|s| (Arc::clone(s), *s.lock())).collect();
        let exposition = Exposition {
            series: &snapshot,
            pending: self.pending.load(Ordering::Relaxed),
            workers: self.workers.load(Ordering::Relaxed),
            late: self.lateness.late.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            cluster: self.cluster(),
        };
        let mut out = String::with_capacity(1024 + snapshot.len() * 2048);
        // Writing into a `String` cannot fail; a formatting error would only truncate it.
        let _ = write!(out, "{exposition}");
        out
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Series>>> {
        self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One render's data, formatted by its `Display`.
struct Exposition<'a> {
    series: &'a [(Arc<Series>, Counts)],
    pending: u64,
    workers: u64,
    late: u64,
    dead: u64,
    cluster: Option<ClusterGauges>,
}

/// The labels every per-loop sample carries, escaped: `target="…",region="…"`.
struct Labels<'a>(&'a Series);

impl fmt::Display for Labels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "target=\"{}\",region=\"{}\"", Escaped(&self.0.target), Escaped(&self.0.region))
    }
}

/// A label value escaped as the format requires: backslash, double quote and line feed.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Milliseconds since the epoch as exact decimal seconds (`1795000000.123`), without going
/// through a float that could print `…0.12299999`.
struct Seconds(Timestamp);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.millis();
        write!(f, "{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
fn header(f: &mut fmt::Formatter<'_>, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(f, "# HELP {name} {help}")?;
    writeln!(f, "# TYPE {name} {kind}")
}

impl fmt::Display for Exposition<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let series = self.series;
        let settled = || series.iter().filter_map(|(s, c)| c.state.map(|state| (s, state)));

        if let Some(c) = &self.cluster {
            let gauges: [(&str, &str, u64); 3] = [
                ("api_monitor_cluster_members", "Live members of the cluster.", c.members),
                (
                    "api_monitor_cluster_leader",
                    "1 while this member holds the leader lease (it alone sends).",
                    u64::from(c.leading.is_some()),
                ),
                (
                    "api_monitor_cluster_term",
                    "The leader lease's term as last read: it grows at every takeover.",
                    c.term,
                ),
            ];
            for (name, help, value) in gauges {
                header(f, name, "gauge", help)?;
                writeln!(f, "{name} {value}")?;
            }
            let name = "api_monitor_cluster_targets_owned";
            header(f, name, "gauge", "Targets this member probes for its site.")?;
            writeln!(f, "{name}{{site=\"{}\"}} {}", Escaped(&c.site), c.owned)?;
        }

        if settled().next().is_some() {
            let name = "api_monitor_up";
            header(
                f,
                name,
                "gauge",
                "Whether the target is up (1) or down (0) as seen from the region: the \
                 detector's settled state. Absent until a first state is known.",
            )?;
            for (s, (health, _)) in settled() {
                writeln!(f, "{name}{{{}}} {}", Labels(s), u8::from(health.is_up()))?;
            }
        }

        if !series.is_empty() {
            let name = "api_monitor_probe_duration_seconds";
            header(f, name, "histogram", "How long each probe took, whatever its result.")?;
            for (s, c) in series {
                let labels = Labels(s);
                let mut cumulative = 0;
                for (&(le, _), count) in BUCKETS.iter().zip(&c.buckets) {
                    cumulative += count;
                    writeln!(f, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}")?;
                }
                let total: u64 = c.buckets.iter().sum();
                writeln!(f, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}")?;
                writeln!(f, "{name}_sum{{{labels}}} {}", c.duration_sum.as_secs_f64())?;
                writeln!(f, "{name}_count{{{labels}}} {total}")?;
            }

            let name = "api_monitor_probes_total";
            header(
                f,
                name,
                "counter",
                "Probes since start, by result: ok, failed, or blind (the region's proxy \
                 failed, so the probe says nothing about the target).",
            )?;
            for (s, c) in series {
                for (result, count) in RESULTS.iter().zip(c.probes) {
                    writeln!(f, "{name}{{{},result=\"{result}\"}} {count}", Labels(s))?;
                }
            }

            if series.iter().any(|(_, c)| c.failures.iter().any(|&n| n > 0)) {
                let name = "api_monitor_probe_failures_total";
                header(
                    f,
                    name,
                    "counter",
                    "Failed and blind probes since start by kind of reason (timeout, refused, \
                     reset, closed, dns, tls, http_status, content_type, body, status, \
                     redirect, proxy, other); a kind appears once it has happened.",
                )?;
                for (s, c) in series {
                    for (kind, count) in KINDS.iter().zip(c.failures).filter(|(_, n)| *n > 0) {
                        writeln!(f, "{name}{{{},reason=\"{kind}\"}} {count}", Labels(s))?;
                    }
                }
            }

            let name = "api_monitor_outages_total";
            header(
                f,
                name,
                "counter",
                "Transitions to down since start (an outage resumed after a restart is not \
                 counted again).",
            )?;
            for (s, c) in series {
                writeln!(f, "{name}{{{}}} {}", Labels(s), c.outages)?;
            }

            let name = "api_monitor_consecutive_failures";
            header(
                f,
                name,
                "gauge",
                "Failed probes in a row; a healthy probe resets it, a blind one leaves it.",
            )?;
            for (s, c) in series {
                writeln!(f, "{name}{{{}}} {}", Labels(s), c.consecutive_failures)?;
            }
        }

        if settled().next().is_some() {
            let name = "api_monitor_last_transition_timestamp_seconds";
            header(
                f,
                name,
                "gauge",
                "When the current state began (Unix time): the first probe of the streak that \
                 settled it. Absent until a first state is known.",
            )?;
            for (s, (_, since)) in settled() {
                writeln!(f, "{name}{{{}}} {}", Labels(s), Seconds(since))?;
            }
        }

        let name = "api_monitor_notifications_pending";
        header(f, name, "gauge", "Emails in the outbox not yet accepted by the SMTP server.")?;
        writeln!(f, "{name} {}", self.pending)?;

        let name = "api_monitor_notifications_dead_total";
        header(
            f,
            name,
            "counter",
            "Emails refused for good by the SMTP server (see `api-monitor outbox`).",
        )?;
        writeln!(f, "{name} {}", self.dead)?;

        let name = "api_monitor_probe_workers_max";
        header(f, name, "gauge", "The most probes in flight at once (--concurrency).")?;
        writeln!(f, "{name} {}", self.workers)?;

        let name = "api_monitor_probes_late_total";
        header(
            f,
            name,
            "counter",
            "Probes that started more than 100 ms after they were due (--concurrency probes in \
             flight, or the machine overloaded).",
        )?;
        writeln!(f, "{name} {}", self.late)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Reason;

    const DIRECT: &str = "direct";
    const URL: &str = "http://api.example/health";

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn ok(latency_ms: u64) -> Outcome {
        Outcome::Healthy { latency: ms(latency_ms) }
    }

    fn failed(latency_ms: u64) -> Outcome {
        Outcome::Failed { reason: Reason::HttpStatus(503), latency: ms(latency_ms) }
    }

    fn blind(latency_ms: u64) -> Outcome {
        let proxy = "proxy.example".to_string();
        Outcome::Blind { reason: Reason::ProxyRefused { proxy }, latency: ms(latency_ms) }
    }

    fn transition(to: Health, since_ms: i64) -> Transition {
        Transition { from: None, to, since: Timestamp::from_millis(since_ms), reasons: vec![] }
    }

    /// The value of the one sample line starting with `prefix` (name and labels).
    fn value(text: &str, prefix: &str) -> Option<String> {
        let mut found = text
            .lines()
            .filter(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| l[prefix.len() + 1..].to_owned());
        let first = found.next();
        assert!(found.next().is_none(), "{prefix}: more than one sample");
        first
    }

    fn sample(text: &str, prefix: &str) -> String {
        value(text, prefix).unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
    }

    const LABELS: &str = "target=\"http://api.example/health\",region=\"direct\"";

    #[test]
    fn an_empty_registry_renders_only_the_process_wide_families() {
        let registry = Registry::new();
        registry.set_pending_notifications(2);
        assert_eq!(
            registry.render(),
            "# HELP api_monitor_notifications_pending Emails in the outbox not yet accepted by \
             the SMTP server.\n\
             # TYPE api_monitor_notifications_pending gauge\n\
             api_monitor_notifications_pending 2\n\
             # HELP api_monitor_notifications_dead_total Emails refused for good by the SMTP \
             server (see `api-monitor outbox`).\n\
             # TYPE api_monitor_notifications_dead_total counter\n\
             api_monitor_notifications_dead_total 0\n\
             # HELP api_monitor_probe_workers_max The most probes in flight at once \
             (--concurrency).\n\
             # TYPE api_monitor_probe_workers_max gauge\n\
             api_monitor_probe_workers_max 0\n\
             # HELP api_monitor_probes_late_total Probes that started more than 100 ms after \
             they were due (--concurrency probes in flight, or the machine overloaded).\n\
             # TYPE api_monitor_probes_late_total counter\n\
             api_monitor_probes_late_total 0\n",
            "families without samples are left out"
        );
        assert_eq!(registry.healthz(Instant::now()), Ok(()), "no loop, nothing stuck");
    }

    #[test]
    fn values_follow_an_outage_and_a_recovery() {
        let registry = Registry::new();
        let start = Instant::now();
        let watch = registry.register(URL, DIRECT, ms(1_000), ms(500), start);
        let text = registry.render();
        assert_eq!(value(&text, &format!("api_monitor_up{{{LABELS}}}")), None, "state unknown");
        assert!(!text.contains("api_monitor_last_transition"), "no state, no transition time");
        assert_eq!(sample(&text, &format!("api_monitor_outages_total{{{LABELS}}}")), "0");

        // First settled state: up.
        watch.probe(&ok(3), start + ms(10));
        watch.transition(&transition(Health::Up, 1_000));
        // Two failures make an outage.
        watch.probe(&failed(40), start + ms(1_010));
        watch.probe(&failed(2_000), start + ms(2_010));
        watch.transition(&transition(Health::Down, 2_000));
        let text = registry.render();
        assert_eq!(sample(&text, &format!("api_monitor_up{{{LABELS}}}")), "0", "down");
        assert_eq!(sample(&text, &format!("api_monitor_outages_total{{{LABELS}}}")), "1");
        assert_eq!(sample(&text, &format!("api_monitor_consecutive_failures{{{LABELS}}}")), "2");
        assert_eq!(
            sample(&text, &format!("api_monitor_last_transition_timestamp_seconds{{{LABELS}}}")),
            "2.000",
            "the outage began with the first failed probe"
        );

        // A blind probe neither counts as a failure nor breaks the run.
        watch.probe(&blind(20_000), start + ms(3_010));
        let text = registry.render();
        assert_eq!(sample(&text, &format!("api_monitor_consecutive_failures{{{LABELS}}}")), "2");
        assert_eq!(
            sample(&text, &format!("api_monitor_probes_total{{{LABELS},result=\"blind\"}}")),
            "1"
        );

        // Recovery.
        watch.probe(&ok(7), start + ms(4_010));
        watch.transition(&transition(Health::Up, 4_010));
        let text = registry.render();
        assert_eq!(sample(&text, &format!("api_monitor_up{{{LABELS}}}")), "1", "up again");
        assert_eq!(sample(&text, &format!("api_monitor_outages_total{{{LABELS}}}")), "1");
        assert_eq!(sample(&text, &format!("api_monitor_consecutive_failures{{{LABELS}}}")), "0");
        assert_eq!(
            sample(&text, &format!("api_monitor_last_transition_timestamp_seconds{{{LABELS}}}")),
            "4.010"
        );
        for (result, count) in [("ok", "2"), ("failed", "2"), ("blind", "1")] {
            let key = format!("api_monitor_probes_total{{{LABELS},result=\"{result}\"}}");
            assert_eq!(sample(&text, &key), count, "{result} probes");
        }
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("api_monitor_probe_duration_seconds_bucket{{{LABELS},le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.005"), "1", "3 ms");
        assert_eq!(bucket("0.01"), "2", "3 ms, 7 ms");
        assert_eq!(bucket("0.05"), "3", "and 40 ms");
        assert_eq!(bucket("2.5"), "4", "and 2 s");
        assert_eq!(bucket("10"), "4", "the blind 20 s probe is above every bound");
        assert_eq!(bucket("+Inf"), "5", "every probe");
        let prefix = "api_monitor_probe_duration_seconds";
        assert_eq!(sample(&text, &format!("{prefix}_count{{{LABELS}}}")), "5");
        assert_eq!(sample(&text, &format!("{prefix}_sum{{{LABELS}}}")), "22.05");
    }

    #[test]
    fn failures_are_counted_by_kind_of_reason_and_absent_until_one_happens() {
        let registry = Registry::new();
        let watch = registry.register(URL, DIRECT, ms(1_000), ms(500), Instant::now());
        watch.probe(&ok(1), Instant::now());
        assert!(
            !registry.render().contains("api_monitor_probe_failures_total"),
            "no failure yet: no family"
        );
        watch.probe(&failed(1), Instant::now());
        watch.probe(&failed(1), Instant::now());
        let timeout = Outcome::Failed {
            reason: Reason::Timeout { after: ms(500), phase: crate::probe::Phase::Head },
            latency: ms(500),
        };
        watch.probe(&timeout, Instant::now());
        let slow = Outcome::Failed {
            reason: Reason::Slow { took: ms(450), limit: ms(400) },
            latency: ms(450),
        };
        watch.probe(&slow, Instant::now());
        watch.probe(&blind(1), Instant::now());
        let text = registry.render();
        let kind = |k: &str| {
            sample(&text, &format!("api_monitor_probe_failures_total{{{LABELS},reason=\"{k}\"}}"))
        };
        assert_eq!(kind("http_status"), "2");
        assert_eq!(kind("timeout"), "1");
        assert_eq!(kind("slow"), "1", "a healthy answer over its slow limit");
        assert_eq!(kind("proxy"), "1", "a blind probe counts under its proxy reason");
        assert!(!text.contains("reason=\"dns\""), "kinds that never happened are left out");
    }

    #[test]
    fn a_bound_is_inclusive() {
        let registry = Registry::new();
        let watch = registry.register(URL, DIRECT, ms(1_000), ms(500), Instant::now());
        watch.probe(&ok(100), Instant::now());
        let text = registry.render();
        let key =
            |le: &str| format!("api_monitor_probe_duration_seconds_bucket{{{LABELS},le=\"{le}\"}}");
        assert_eq!(sample(&text, &key("0.05")), "0");
        assert_eq!(sample(&text, &key("0.1")), "1", "le means less than or equal");
    }

    #[test]
    fn a_resumed_outage_is_not_a_new_one() {
        let registry = Registry::new();
        let watch = registry.register(URL, DIRECT, ms(1_000), ms(500), Instant::now());
        watch.resume(Health::Down, Timestamp::from_millis(1_795_000_000_123));
        let text = registry.render();
        assert_eq!(sample(&text, &format!("api_monitor_up{{{LABELS}}}")), "0");
        assert_eq!(sample(&text, &format!("api_monitor_outages_total{{{LABELS}}}")), "0");
        assert_eq!(
            sample(&text, &format!("api_monitor_last_transition_timestamp_seconds{{{LABELS}}}")),
            "1795000000.123",
            "exact milliseconds, no float noise"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let registry = Registry::new();
        registry.register("a\\b\"c\nd", "r\"", ms(1_000), ms(500), Instant::now());
        let text = registry.render();
        assert!(
            text.contains(
                "api_monitor_outages_total{target=\"a\\\\b\\\"c\\nd\",region=\"r\\\"\"} 0"
            ),
            "backslash, quote and newline escaped:\n{text}"
        );
        assert!(text.lines().all(|l| !l.is_empty()), "no raw newline splits a sample");
    }

    #[test]
    fn series_render_sorted_and_registering_twice_reuses_the_series() {
        let registry = Registry::new();
        let now = Instant::now();
        registry.register("b", "x", ms(1_000), ms(500), now);
        registry.register("a", "y", ms(1_000), ms(500), now);
        let again = registry.register("b", "x", ms(1_000), ms(500), now);
        again.probe(&ok(1), now);
        let text = registry.render();
        let targets: Vec<&str> =
            text.lines().filter(|l| l.starts_with("api_monitor_outages_total{")).collect();
        assert_eq!(
            targets,
            [
                "api_monitor_outages_total{target=\"a\",region=\"y\"} 0",
                "api_monitor_outages_total{target=\"b\",region=\"x\"} 0"
            ],
            "one series per pair, sorted by target then region"
        );
        assert_eq!(
            sample(&text, "api_monitor_probes_total{target=\"b\",region=\"x\",result=\"ok\"}"),
            "1",
            "the second handle feeds the first series"
        );
    }

    #[test]
    fn healthz_flips_when_the_state_owner_leaves_outcomes_unhandled() {
        let registry = Registry::new();
        let start = Instant::now();
        let later = start + STATE_STALL_AFTER + Duration::from_secs(1);
        assert_eq!(registry.health(later), Healthz::Ok, "nothing waiting: an idle owner is fine");
        registry.outcomes_sent(2);
        registry.outcome_handled(start);
        match registry.health(later) {
            Healthz::Unwell(why) => {
                assert!(why.contains("state owner stuck: 1 probe outcome"), "{why}")
            }
            other => panic!("expected unwell, got {other:?}"),
        }
        registry.outcome_handled(later);
        assert_eq!(registry.health(later), Healthz::Ok, "caught up");
        registry.set_waiting(Some("standby: held by x".into()));
        assert_eq!(registry.health(later), Healthz::Standby("standby: held by x".into()));
        registry.set_waiting(Some("waiting for the database".into()));
        assert_eq!(registry.health(later), Healthz::Unwell("waiting for the database".into()));
    }

    #[test]
    fn healthz_flips_when_a_loop_stops_probing() {
        let registry = Registry::new();
        let start = Instant::now();
        let steady = registry.register("steady", DIRECT, ms(1_000), ms(500), start);
        let stuck = registry.register("stuck", "eu", ms(1_000), ms(500), start);
        // Limit: 3 × 1 s + 0.5 s = 3.5 s of silence.
        assert_eq!(registry.healthz(start + ms(3_500)), Ok(()), "at the limit: still alive");
        steady.probe(&ok(1), start + ms(3_000));
        stuck.probe(&ok(1), start + ms(1_000));
        assert_eq!(registry.healthz(start + ms(4_500)), Ok(()), "both probed within 3.5 s");
        steady.probe(&failed(1), start + ms(5_000));
        let err = registry.healthz(start + ms(6_000)).expect_err("stuck has been silent 5 s");
        assert_eq!(
            err,
            Stalled(vec![Stall {
                target: "stuck".into(),
                region: "eu".into(),
                silent_for: ms(5_000),
                limit: ms(3_500),
            }]),
            "only the silent loop is named; a failing probe is still a tick"
        );
        assert_eq!(
            err.to_string(),
            "probe loop stuck: target=stuck region=eu no probe for 5s (limit 3s 500ms)"
        );
        stuck.probe(&ok(1), start + ms(6_000));
        assert_eq!(registry.healthz(start + ms(6_000)), Ok(()), "it ticked again");
    }
}
