//! The steps at scale: many targets on an in-process loopback API ([`HealthServer`]), seen from
//! the server's side.
//!
//! - **scale** — `--scale-targets` targets (a generated `--config` file, one path each) every
//!   `--scale-interval`.
//! - **holes** — the same, `--holes` of them evenly spread [`BlackHole`]s: accepted, never
//!   answered, so each of their probes lasts the whole `--scale-timeout`. Only the healthy
//!   targets' lateness is measured.
//! - **monit** — monit and api-monitor side by side, `--monit-targets` hosts each on the same
//!   server: their actual period per host, CPU per probe and RSS.
//!
//! Lateness of a probe = its hit time − (the target's phase + k × interval), where k counts
//! the target's probes and the phase is the earliest `hit − k × interval` the target showed:
//! a fixed-rate schedule as the server sees it. A constant delay shared by every probe of a
//! target is therefore invisible, drift and jitter are not; a skipped tick shows as one
//! interval of lateness on each later probe of that target. Tick 0 (the first probe) is
//! reported on its own, from the monitor's start.
//!
//! None of this fails on a timing: a monitor that falls behind gives fewer probes within the
//! deadline and the report says so. A step fails only when it has nothing to measure.

use crate::{flag_duration, mib, percentile, progress, spawn_logged, verdict, Ctx, STOP_LIMIT};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use testkit::procfs::{self, Mapping};
use testkit::{BlackHole, HealthServer, PathHit, Process};

type Result<T> = std::result::Result<T, String>;

/// Goals of the scale steps.
const GOAL_P99_MS: f64 = 50.0;
const GOAL_RSS_KIB: u64 = 64 * 1024;
const GOAL_EXTRA_THREADS: u64 = 16;
/// A period within this of the interval counts as exact.
const EXACT_MS: f64 = 50.0;
/// Threads of the in-process API server.
const SERVER_WORKERS: usize = 8;

/// What one process cost over a run, sampled every half second.
#[derive(Default)]
pub struct Usage {
    pub hwm_kib: u64,
    /// VmRSS samples after the first round.
    pub rss_kib: Vec<u64>,
    /// Entries of /proc/PID/task, sampled.
    pub threads: Vec<u64>,
    pub fds: Vec<u64>,
    /// CPU µs per probe after the first round (probes counted at the server).
    pub cpu_per_probe_us: f64,
    /// The same over the whole run, start-up included.
    pub cpu_per_probe_all_us: f64,
}

impl Usage {
    fn sample(&mut self, pid: u32) -> Result<()> {
        self.rss_kib.push(procfs::status(pid, "VmRSS")?);
        self.threads.push(procfs::threads(pid)?);
        self.fds.push(procfs::fds(pid)?);
        Ok(())
    }

    fn steady_rss_kib(&self) -> u64 {
        let mut v = self.rss_kib.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }

    fn threads_max(&self) -> u64 {
        self.threads.iter().copied().max().unwrap_or(0)
    }
}

/// Probe timing of a set of targets, from the server's hits.
#[derive(Default)]
pub struct Timing {
    /// Targets hit at least once, of those expected.
    pub targets_hit: usize,
    pub targets: usize,
    pub probes: usize,
    /// Lateness (ms) of ticks ≥ 1.
    pub lateness: Vec<f64>,
    /// Monitor start → tick 0, per target (ms).
    pub first: Vec<f64>,
    /// Gaps between consecutive probes of a target (ms).
    pub periods: Vec<f64>,
}

impl Timing {
    /// `hits` of the paths `wanted` (path → nothing else), against `interval`, the monitor
    /// having started at `started`.
    fn measure(
        hits: &[PathHit],
        wanted: &[String],
        interval: Duration,
        started: Instant,
    ) -> Timing {
        let mut by_path: HashMap<&str, Vec<Instant>> =
            wanted.iter().map(|p| (p.as_str(), Vec::new())).collect();
        for hit in hits {
            if let Some(list) = by_path.get_mut(hit.path.as_str()) {
                list.push(hit.at);
            }
        }
        let every = interval.as_secs_f64() * 1000.0;
        let mut t = Timing { targets: wanted.len(), ..Timing::default() };
        for list in by_path.values_mut() {
            list.sort_unstable();
            let Some(&zero) = list.first() else { continue };
            t.targets_hit += 1;
            t.probes += list.len();
            t.first.push(ms_between(started, zero));
            // ms after tick 0, minus k intervals: the phase each probe shows.
            let phases: Vec<f64> = list
                .iter()
                .enumerate()
                .map(|(k, &at)| ms_between(zero, at) - k as f64 * every)
                .collect();
            let anchor = phases.iter().copied().fold(f64::INFINITY, f64::min);
            t.lateness.extend(phases.iter().skip(1).map(|p| p - anchor));
            t.periods.extend(list.windows(2).map(|w| ms_between(w[0], w[1])));
        }
        t
    }

    fn periods_off(&self, interval: Duration) -> usize {
        let every = interval.as_secs_f64() * 1000.0;
        self.periods.iter().filter(|p| (*p - every).abs() > EXACT_MS).count()
    }
}

fn ms_between(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64() * 1000.0
    } else {
        -((a - b).as_secs_f64() * 1000.0)
    }
}

pub struct ScaleStep {
    pub targets: usize,
    pub holes: usize,
    /// The healthy targets' timing.
    pub timing: Timing,
    /// Probes expected at the server when the run ended, and how many arrived.
    pub wanted: usize,
    pub arrived: usize,
    /// Healthy targets that had all their rounds before the deadline.
    pub complete: usize,
    /// Connections the black hole accepted.
    pub hole_probes: usize,
    pub usage: Usage,
    /// The probe pool's size, if the monitor's start-up log states it.
    pub pool: Option<u64>,
    pub stop: Duration,
    pub smaps: Vec<Mapping>,
}

/// The monitor's `--config` file: the global settings and one `[[target]]` per URL.
fn write_config(
    path: &Path,
    urls: &[String],
    interval: Duration,
    timeout: Duration,
    db: &Path,
) -> Result<()> {
    let mut text = format!(
        "# Generated by bench.\ninterval = \"{}\"\ntimeout = \"{}\"\nfailures = 2\nsuccesses = 2\ndb = \"sqlite://{}\"\n",
        flag_duration(interval),
        flag_duration(timeout),
        db.display()
    );
    for url in urls {
        let _ = write!(text, "\n[[target]]\nurl = \"{url}\"\n");
    }
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Starts api-monitor on a generated config file of `urls`.
fn start_monitor(
    ctx: &Ctx<'_>,
    bin: &Path,
    name: &str,
    urls: &[String],
    interval: Duration,
    timeout: Duration,
) -> Result<Process> {
    let config = ctx.work.join(format!("{name}.toml"));
    write_config(&config, urls, interval, timeout, &ctx.work.join(format!("{name}.db")))?;
    let args = ["run".to_owned(), "--config".to_owned(), config.display().to_string()];
    spawn_logged(bin, &args, &ctx.work.join(format!("{name}.log")))
}

/// Whether `(i, n, holes)` is one of `holes` targets spread evenly over `n`.
fn is_hole(i: usize, n: usize, holes: usize) -> bool {
    (i * holes) % n < holes
}

/// The scale step (`holes == 0`) or the holes step.
pub fn step_scale(ctx: &Ctx<'_>, holes: usize) -> Result<ScaleStep> {
    let o = ctx.o;
    let (n, interval, timeout) = (o.scale_targets, o.scale_interval, o.scale_timeout);
    let name = if holes == 0 { "scale" } else { "holes" };
    let server = HealthServer::start(SERVER_WORKERS)?;
    let hole =
        if holes > 0 { Some(BlackHole::start(timeout + Duration::from_secs(5))?) } else { None };
    let (mut urls, mut healthy) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        match &hole {
            Some(hole) if is_hole(i, n, holes) => urls.push(hole.url(&format!("/hole/{i}"))),
            _ => {
                let path = format!("/t/{i}");
                urls.push(server.url(&path));
                healthy.push(path);
            }
        }
    }
    let started = Instant::now();
    let mut monitor = start_monitor(ctx, &ctx.bins.monitor, name, &urls, interval, timeout)?;
    let pid = monitor.pid();
    let wanted = healthy.len() * (o.scale_rounds + 1);
    let deadline = started + interval * (o.scale_rounds as u32 + 2) * 2 + Duration::from_secs(60);
    let mut usage = Usage::default();
    // The first round (tick 0 of every healthy target), then until every healthy target has
    // had its measured rounds, or the deadline.
    let first = watch(&mut monitor, &server, &healthy, 1, deadline, &mut usage, false)?;
    let (cpu_first, hits_first) = (procfs::cpu_ns(pid)?, server.hits.len());
    let complete =
        watch(&mut monitor, &server, &healthy, o.scale_rounds + 1, deadline, &mut usage, true)?;
    let arrived = server.hits.len();
    if complete < healthy.len() {
        progress(&format!(
            "  only {complete} of {} targets had {} probes by the deadline",
            healthy.len(),
            o.scale_rounds + 1
        ));
    }
    let cpu_end = procfs::cpu_ns(pid)?;
    usage.hwm_kib = procfs::status(pid, "VmHWM")?;
    usage.cpu_per_probe_us =
        (cpu_end - cpu_first) as f64 / 1000.0 / (arrived - hits_first).max(1) as f64;
    usage.cpu_per_probe_all_us = cpu_end as f64 / 1000.0 / arrived.max(1) as f64;
    let smaps = procfs::smaps(pid, "api-monitor")?;
    let stop = monitor.terminate(STOP_LIMIT)?;
    let timing = server.hits.read(|hits| Timing::measure(hits, &healthy, interval, started));
    if timing.lateness.is_empty() {
        return Err(format!(
            "{name}: no target was probed twice ({first} targets in the first round, {arrived} probes in all){}",
            monitor.tail(8)
        ));
    }
    let pool = pool_size(&monitor);
    Ok(ScaleStep {
        targets: n,
        holes,
        timing,
        wanted,
        arrived,
        complete,
        hole_probes: hole.map_or(0, |h| h.accepted.load(std::sync::atomic::Ordering::SeqCst)),
        usage,
        pool,
        stop,
        smaps,
    })
}

/// Samples `monitor` every half second (into `usage` when `record`) until each of `paths` has
/// had `rounds` hits at `server`, or `deadline`; returns how many paths got there. The
/// monitor exiting is an error.
fn watch(
    monitor: &mut Process,
    server: &HealthServer,
    paths: &[String],
    rounds: usize,
    deadline: Instant,
    usage: &mut Usage,
    record: bool,
) -> Result<usize> {
    loop {
        let complete = server.hits.read(|hits| {
            let mut seen: HashMap<&str, usize> = paths.iter().map(|p| (p.as_str(), 0)).collect();
            for hit in hits {
                if let Some(n) = seen.get_mut(hit.path.as_str()) {
                    *n += 1;
                }
            }
            seen.values().filter(|&&n| n >= rounds).count()
        });
        if complete == paths.len() || Instant::now() >= deadline {
            return Ok(complete);
        }
        monitor.alive()?;
        if record {
            usage.sample(monitor.pid())?;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The probe pool's size from the start-up log, if a line states it (`concurrency=N`,
/// `most=N`, `pool=N`, `pool_size=N` or `workers=N`).
fn pool_size(monitor: &Process) -> Option<u64> {
    monitor.stderr.read(|lines| {
        lines.iter().take(50).find_map(|line| {
            ["concurrency=", "most=", "pool=", "pool_size=", "workers="].iter().find_map(|key| {
                let value = testkit::fake_api::token(line, key)?;
                value.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok()
            })
        })
    })
}

// ---------------------------------------------------------------------------------------------
// monit side by side

/// One monitor's side of the monit step.
pub struct Side {
    pub timing: Timing,
    pub usage: Usage,
}

/// A process's CPU clock and its probes at the server, at one moment.
#[derive(Clone, Copy)]
struct Mark {
    cpu_ns: u64,
    hits: usize,
}

pub struct MonitStep {
    pub hosts: usize,
    /// `None`: monit is not installed (the reason).
    pub monit: std::result::Result<(String, Side), String>,
    pub ours: Side,
    /// The image's static binary (`--image-bin`), run at the same time on its own paths.
    pub image: Option<Side>,
}

/// `monit` on the PATH or in the usual places.
fn find_monit() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"])
        .map(|dir| Path::new(dir).join("monit"))
        .find(|p| p.is_file());
    found
}

/// monit's control file: a cycle of `interval`, one `check host` with an HTTP GET per path.
fn write_monitrc(
    path: &Path,
    work: &Path,
    interval: Duration,
    port: u16,
    paths: &[String],
) -> Result<()> {
    let mut text = format!(
        "# Generated by bench.\nset daemon {}\nset logfile {}\nset pidfile {}\nset idfile {}\nset statefile {}\n",
        interval.as_secs(),
        work.join("monit.log").display(),
        work.join("monit.pid").display(),
        work.join("monit.id").display(),
        work.join("monit.state").display()
    );
    for (i, p) in paths.iter().enumerate() {
        let _ = write!(
            text,
            "\ncheck host h{i} with address 127.0.0.1\n    if failed port {port} protocol http request \"{p}\" with timeout 5 seconds then alert\n"
        );
    }
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // monit refuses a control file that others can read.
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

pub fn step_monit(ctx: &Ctx<'_>) -> Result<MonitStep> {
    let o = ctx.o;
    let (n, interval) = (o.monit_targets, o.monit_interval);
    let server = HealthServer::start(SERVER_WORKERS)?;
    let monit_paths: Vec<String> = (0..n).map(|i| format!("/m/{i}")).collect();

    let bin = match &o.monit_bin {
        Some(path) => Some(path.clone()).filter(|p| p.is_file()),
        None => find_monit(),
    };
    let mut monit = match bin {
        None => Err("monit is not installed (Debian: `apt-get install -y monit`)".to_owned()),
        Some(bin) => {
            let rc = ctx.work.join("monitrc");
            write_monitrc(&rc, ctx.work, interval, server.addr.port(), &monit_paths)?;
            let version = std::process::Command::new(&bin)
                .arg("-V")
                .output()
                .map(|out| {
                    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned()
                })
                .unwrap_or_default();
            let args = ["-I".to_owned(), "-c".to_owned(), rc.display().to_string()];
            let process = spawn_logged(&bin, &args, &ctx.work.join("monit.out"))?;
            Ok((version, process))
        }
    };
    if let Err(why) = &monit {
        progress(&format!("  SKIPPED monit: {why}; measuring api-monitor alone"));
    }
    let started = Instant::now();
    // api-monitor, and the image's binary when given: each on its own paths of the server.
    let mut ours = vec![Ours::start(ctx, &ctx.bins.monitor, "monit-ours", "/a/", &server, n)?];
    if let Some(image) = &ctx.bins.image {
        ours.push(Ours::start(ctx, image, "monit-image", "/i/", &server, n)?);
    }

    let wanted = n * (o.monit_rounds + 1);
    let deadline = started + interval * (o.monit_rounds as u32 + 2) * 3 + Duration::from_secs(60);
    let count = |prefix: &str| {
        server.hits.read(|h| h.iter().filter(|h| h.path.starts_with(prefix)).count())
    };
    let mut monit_usage = Usage::default();
    // Where the measured window starts: after every host's first probe, for each of them.
    let mut monit_first: Option<Mark> = None;
    loop {
        let m = count("/m/");
        let monit_done = monit.as_ref().map_or(true, |_| m >= wanted);
        if (ours.iter().all(|s| count(s.prefix) >= wanted) && monit_done)
            || Instant::now() >= deadline
        {
            break;
        }
        for side in &mut ours {
            side.process.alive()?;
            let hits = count(side.prefix);
            if side.first.is_none() && hits >= n {
                side.first = Some(Mark { cpu_ns: procfs::cpu_ns(side.process.pid())?, hits });
            }
            if side.first.is_some() {
                side.usage.sample(side.process.pid())?;
            }
        }
        if let Ok((_, p)) = &mut monit {
            p.alive()?;
            if monit_first.is_none() && m >= n {
                monit_first = Some(Mark { cpu_ns: procfs::cpu_ns(p.pid())?, hits: m });
            }
            if monit_first.is_some() {
                monit_usage.sample(p.pid())?;
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
    let zero = Mark { cpu_ns: 0, hits: 0 };
    let finish = |usage: &mut Usage, pid: u32, from: Mark, hits: usize| -> Result<()> {
        let cpu = procfs::cpu_ns(pid)?;
        usage.hwm_kib = procfs::status(pid, "VmHWM")?;
        if usage.rss_kib.is_empty() {
            usage.sample(pid)?;
        }
        usage.cpu_per_probe_us =
            (cpu - from.cpu_ns) as f64 / 1000.0 / (hits - from.hits).max(1) as f64;
        usage.cpu_per_probe_all_us = cpu as f64 / 1000.0 / hits.max(1) as f64;
        Ok(())
    };
    let mut sides = Vec::new();
    for mut side in ours {
        let hits = count(side.prefix);
        finish(&mut side.usage, side.process.pid(), side.first.unwrap_or(zero), hits)?;
        side.process.terminate(STOP_LIMIT)?;
        let timing = server.hits.read(|h| Timing::measure(h, &side.paths, interval, started));
        sides.push(Side { timing, usage: side.usage });
    }
    let m = count("/m/");
    let monit = match monit {
        Err(why) => Err(why),
        Ok((version, mut process)) => {
            finish(&mut monit_usage, process.pid(), monit_first.unwrap_or(zero), m)?;
            // monit's own exit status after SIGTERM is not ours to judge.
            let _ = process.send(nix::sys::signal::Signal::SIGTERM);
            let _ = process.exit_within(STOP_LIMIT);
            let hits_monit =
                server.hits.read(|hits| Timing::measure(hits, &monit_paths, interval, started));
            if hits_monit.periods.is_empty() {
                return Err(format!(
                    "monit ran but probed no host twice ({m} requests): is the generated monitrc \
                     right? see {}{}",
                    ctx.work.join("monit.log").display(),
                    process.tail(8)
                ));
            }
            Ok((version, Side { timing: hits_monit, usage: monit_usage }))
        }
    };
    let mut sides = sides.into_iter();
    let ours = sides.next().expect("api-monitor's side");
    Ok(MonitStep { hosts: n, monit, ours, image: sides.next() })
}

/// One api-monitor binary of the monit step while it runs.
struct Ours {
    process: Process,
    /// Its hosts' paths at the server, all starting with `prefix`.
    paths: Vec<String>,
    prefix: &'static str,
    usage: Usage,
    /// Its CPU clock and probes when every host had had its first probe.
    first: Option<Mark>,
}

impl Ours {
    fn start(
        ctx: &Ctx<'_>,
        bin: &Path,
        name: &str,
        prefix: &'static str,
        server: &HealthServer,
        n: usize,
    ) -> Result<Ours> {
        let paths: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        let urls: Vec<String> = paths.iter().map(|p| server.url(p)).collect();
        let process =
            start_monitor(ctx, bin, name, &urls, ctx.o.monit_interval, Duration::from_secs(5))?;
        Ok(Ours { process, paths, prefix, usage: Usage::default(), first: None })
    }
}

// ---------------------------------------------------------------------------------------------
// The report

fn p(values: &[f64], q: f64) -> String {
    if values.is_empty() {
        "n/a".into()
    } else {
        format!("{:.0} ms", percentile(values, q))
    }
}

pub fn render(
    w: &mut String,
    o: &crate::options::Options,
    scale: Option<&ScaleStep>,
    holes: Option<&ScaleStep>,
    monit: Option<&MonitStep>,
) {
    for step in [scale, holes].into_iter().flatten() {
        render_scale(w, o, step);
    }
    if let Some(m) = monit {
        render_monit(w, o, m);
    }
}

fn render_scale(w: &mut String, o: &crate::options::Options, s: &ScaleStep) {
    let t = &s.timing;
    let u = &s.usage;
    if s.holes == 0 {
        let _ = writeln!(
            w,
            "## Scale: {} targets every {}\n",
            s.targets,
            flag_duration(o.scale_interval)
        );
    } else {
        let _ = writeln!(
            w,
            "## Black holes: {} targets every {}, {} of them never answer (timeout {})\n",
            s.targets,
            flag_duration(o.scale_interval),
            s.holes,
            flag_duration(o.scale_timeout)
        );
    }
    let p99 = percentile(&t.lateness, 99.0);
    let threads = u.threads_max();
    let _ = writeln!(w, "| | value | goal | |");
    let _ = writeln!(w, "|---|---|---|---|");
    let who = if s.holes == 0 { "" } else { "healthy targets' " };
    let _ = writeln!(
        w,
        "| {who}probe start lateness p50 / p99 / max, ticks ≥ 1 ({} probes) | {} / {} / {} | p99 < {GOAL_P99_MS:.0} ms | {} |",
        t.lateness.len(),
        p(&t.lateness, 50.0),
        p(&t.lateness, 99.0),
        p(&t.lateness, 100.0),
        verdict(p99 < GOAL_P99_MS)
    );
    let _ = writeln!(
        w,
        "| peak RSS (VmHWM) / steady RSS (median VmRSS) | {} / {} | < 64 MiB | {} |",
        mib(u.hwm_kib),
        mib(u.steady_rss_kib()),
        verdict(u.hwm_kib < GOAL_RSS_KIB)
    );
    let (goal, met) = match s.pool {
        Some(pool) => (
            format!("≤ pool {pool} + {GOAL_EXTRA_THREADS}"),
            verdict(threads <= pool + GOAL_EXTRA_THREADS),
        ),
        None => {
            (format!("≤ pool + {GOAL_EXTRA_THREADS}"), "n/a (no pool size in the start-up log)")
        }
    };
    let _ = writeln!(w, "| threads, most seen (/proc/PID/task) | {threads} | {goal} | {met} |");
    let _ = writeln!(
        w,
        "| CPU per probe after the first round / whole run | {:.0} µs / {:.0} µs | | |",
        u.cpu_per_probe_us, u.cpu_per_probe_all_us
    );
    let _ = writeln!(
        w,
        "| first probe after the monitor's start (tick 0) p50 / p99 / max | {} / {} / {} | | |",
        p(&t.first, 50.0),
        p(&t.first, 99.0),
        p(&t.first, 100.0)
    );
    let _ = writeln!(
        w,
        "| open file descriptors, most seen | {} | | |",
        u.fds.iter().max().copied().unwrap_or(0)
    );
    let _ = writeln!(w, "| SIGTERM → exit | {:.1} ms | | |\n", s.stop.as_secs_f64() * 1000.0);
    let late = t.lateness.iter().filter(|&&l| l > 100.0).count();
    let _ = writeln!(
        w,
        "- probes at the server: {} ({} expected: tick 0 and {} rounds of each target); {} of {} healthy targets had all of theirs{}; {} were probed at all; {} probes started more than 100 ms late; periods off the interval by more than {EXACT_MS:.0} ms: {} of {}",
        s.arrived,
        s.wanted,
        o.scale_rounds,
        s.complete,
        t.targets,
        if s.complete < t.targets { " — **the monitor fell behind: the run ended at the deadline**" } else { "" },
        t.targets_hit,
        late,
        t.periods_off(o.scale_interval),
        t.periods.len()
    );
    if s.holes > 0 {
        let _ = writeln!(
            w,
            "- the black hole accepted {} connections (probes of the {} silent targets)",
            s.hole_probes, s.holes
        );
    }
    let _ = writeln!(
        w,
        "- targets from a generated `--config` file, no SMTP (transitions only logged); the API is the bench's in-process server ({SERVER_WORKERS} threads), which stamps each connection when it accepts it. Lateness: see `bench/src/scale.rs` (against each target's fixed-rate schedule as the server sees it; a constant per-target offset is invisible, 1 ms ≈ noise).\n"
    );
    let _ = writeln!(w, "RSS by mapping at the end of the run:\n");
    crate::smaps_table(w, &s.smaps);
}

fn render_monit(w: &mut String, o: &crate::options::Options, m: &MonitStep) {
    let every = flag_duration(o.monit_interval);
    let _ = writeln!(w, "## Side by side with monit: {} hosts every {every}\n", m.hosts);
    let monit = match &m.monit {
        Ok((version, side)) => Some((version.as_str(), side)),
        Err(why) => {
            let _ = writeln!(
                w,
                "**MONIT WAS NOT MEASURED: {why}. Only api-monitor's column below is a measurement.**\n"
            );
            None
        }
    };
    let name = monit.map_or("monit (not installed)".to_owned(), |(v, _)| v.replace("This is ", ""));
    let image = if m.image.is_some() { " api-monitor, the image's static binary |" } else { "" };
    let _ = writeln!(w, "| | {name} | api-monitor |{image}");
    let _ = writeln!(w, "|---|---|---|{}", if m.image.is_some() { "---|" } else { "" });
    let cell = |f: &dyn Fn(&Side) -> String| monit.map_or("—".to_owned(), |(_, s)| f(s));
    let row = |w: &mut String, label: &str, f: &dyn Fn(&Side) -> String| {
        let image = m.image.as_ref().map_or(String::new(), |side| format!(" {} |", f(side)));
        let _ = writeln!(w, "| {label} | {} | {} |{image}", cell(f), f(&m.ours));
    };
    row(w, "actual period per host p50 / p99 / max", &|s| {
        format!(
            "{} / {} / {}",
            p(&s.timing.periods, 50.0),
            p(&s.timing.periods, 99.0),
            p(&s.timing.periods, 100.0)
        )
    });
    row(w, "shortest period", &|s| p(&s.timing.periods, 0.0));
    row(w, &format!("every period exact (within {EXACT_MS:.0} ms of {every})"), &|s| {
        let off = s.timing.periods_off(o.monit_interval);
        if off == 0 {
            format!("yes ({} periods)", s.timing.periods.len())
        } else {
            format!("**no**: {off} of {} off", s.timing.periods.len())
        }
    });
    row(w, "hosts probed / probes", &|s| {
        format!("{} of {} / {}", s.timing.targets_hit, s.timing.targets, s.timing.probes)
    });
    row(w, "CPU per probe after the first round / whole run", &|s| {
        format!("{:.0} µs / {:.0} µs", s.usage.cpu_per_probe_us, s.usage.cpu_per_probe_all_us)
    });
    row(w, "peak RSS (VmHWM) / steady RSS", &|s| {
        format!("{} / {}", mib(s.usage.hwm_kib), mib(s.usage.steady_rss_kib()))
    });
    row(w, "threads, most seen", &|s| s.usage.threads_max().to_string());
    let _ = writeln!(
        w,
        "\nThey run at the same time against the bench's in-process API (monit: `check host … if failed port … protocol http request \"/m/N\"`, a cycle of `set daemon {}`; api-monitor: a generated `--config`{}). monit checks its hosts one after another in each cycle, so its period is the cycle plus the time the checks take, and one slow host delays every later one; periods are measured per host from the server's hits.\n",
        o.monit_interval.as_secs(),
        if m.image.is_some() {
            "; the image's binary: the same config on its own paths — the build the image ships, statically linked with musl (its libc and allocator), where the other column is the dynamic glibc build"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_spread_evenly_and_counted_exactly() {
        let picked: Vec<usize> = (0..10).filter(|&i| is_hole(i, 10, 3)).collect();
        assert_eq!(picked.len(), 3);
        assert_eq!((0..10_000).filter(|&i| is_hole(i, 10_000, 1000)).count(), 1000);
        assert_eq!((0..50).filter(|&i| is_hole(i, 50, 0)).count(), 0);
    }

    #[test]
    fn lateness_is_against_the_earliest_phase_of_each_target() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let hit = |ms: u64, path: &str| PathHit { at: at(ms), path: path.into() };
        let hits = [
            hit(100, "/a"),
            hit(1_103, "/a"), // 3 ms late
            hit(2_100, "/a"),
            hit(300, "/b"),
            hit(1_300, "/b"),
            hit(999, "/other"),
        ];
        let wanted = ["/a".to_owned(), "/b".to_owned(), "/never".to_owned()];
        let t = Timing::measure(&hits, &wanted, Duration::from_secs(1), t0);
        assert_eq!((t.targets, t.targets_hit, t.probes), (3, 2, 5), "other paths are ignored");
        let mut late: Vec<f64> = t.lateness.iter().map(|l| l.round()).collect();
        late.sort_by(f64::total_cmp);
        assert_eq!(late, [0.0, 0.0, 3.0], "ticks ≥ 1 only");
        let mut first: Vec<f64> = t.first.iter().map(|l| l.round()).collect();
        first.sort_by(f64::total_cmp);
        assert_eq!(first, [100.0, 300.0], "tick 0 from the start");
        assert_eq!(t.periods_off(Duration::from_secs(1)), 0, "3 ms is within the tolerance");
    }
}
