//! `bench`: measures the api-monitor binaries on loopback and writes a markdown report.
//!
//! `make bench` runs it on the release binaries (`bench --out bench/RESULTS.md`); `make
//! bench-smoke` runs every step with tiny sizes (`--smoke`) so it cannot rot. One `fake-api`
//! and an in-process SMTP server ([`testkit::SmtpServer`]) are started on 127.0.0.1 for the
//! whole run; then, one after another (`--steps` picks some):
//!
//! 1. **cpu** — `api-monitor run` with one target at a fast interval: CPU time per probe over
//!    slices of the run, read from the child's process CPU clock (`clock_getcpuclockid`: ns,
//!    every thread, including the ones that have exited), with
//!    `/proc/PID/stat` ticks as a cross-check; peak (`VmHWM`) and steady (`VmRSS`) RSS and the
//!    `/proc/PID/smaps` breakdown. Probes are counted at the fake API.
//! 2. **baseline** — the same for `bench baseline`: a bare `TcpStream` connect + `GET` + read
//!    to the end on the same schedule, measured the same way, so the ratio says how far the
//!    monitor is from the cost of the network exchange itself.
//! 3. **latency** — `--interval 1s --failures 2 --successes 2` with SMTP to the sink. The fake
//!    is flipped down a little (`--lead`) before a probe is due; the time runs from the flip
//!    (fake-api's `mode_change` line) to the OUTAGE mail received in full, and the same for
//!    the flip back and the RECOVERED mail. The phase (flip → first probe that sees the new
//!    mode) is measured, so the excess over the theoretical minimum is independent of it.
//!    Also the CPU per 60 probes and the peak RSS of this workload, which is monit's. With
//!    `--image-bin` (the image's static binary) the step runs again on that binary.
//! 4. **shutdown** — SIGTERM halfway between two probes; until the process has exited.
//! 5. **scale** — many targets (10,000 by default, from a generated `--config` file) on an
//!    in-process loopback API ([`testkit::HealthServer`]) that answers every path and stamps
//!    each hit: probe-start lateness against each target's fixed-rate schedule, seen from the
//!    server; peak and steady RSS, threads, CPU per probe. See [`scale`].
//! 6. **holes** — the same with some of the targets black holes ([`testkit::BlackHole`]):
//!    the lateness of the healthy ones.
//! 7. **monit** — monit and api-monitor side by side, the same hosts on the same API: each
//!    one's actual period per host, CPU per probe, RSS; with `--image-bin`, the image's binary
//!    at the same time on its own paths. monit is skipped, and that said loudly in the report,
//!    when it is not installed.
//! 8. **cluster** — three `api-monitor run --cluster` members on one MariaDB/MySQL (a scratch
//!    database): failover time (leader SIGKILL → the RECOVERED mail), the statements each
//!    member sends per beat and per interval (counted by a proxy per member), and how evenly
//!    many targets are shared. Skipped, and said loudly, without a MySQL server, unless
//!    `REQUIRE_MYSQL=1`. See [`cluster`].
//!
//! No step asserts a timing. A step that cannot take its measurement (no mail before a generous
//! deadline, a child that exits early or non-zero after SIGTERM, …) fails the run: exit 1.

mod cluster;
mod options;
mod scale;

use options::{Command as Cli, Options, HELP};
use testkit::fake_api::token;
use testkit::procfs::{self, Mapping};
use testkit::{Capture, FakeApi, Log, Process, SmtpServer};

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let cli = options::parse_from(
        std::env::args_os().skip(1),
        |k| std::env::var(k).ok(),
        &testkit::bin_dir(),
    );
    match cli {
        Ok(Cli::Help) => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Ok(Cli::Baseline { addr, interval, count }) => match baseline_child(&addr, interval, count)
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench baseline: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Cli::Run(options)) => match run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("bench: {e} (see --help)");
            ExitCode::from(2)
        }
    }
}

/// The monitor's spelling of a duration (`--interval 50ms`, `1s`).
pub(crate) fn flag_duration(d: Duration) -> String {
    match d.as_millis() {
        ms if ms > 0 && ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

// ---------------------------------------------------------------------------------------------
// The run

pub(crate) struct Bins {
    pub monitor: PathBuf,
    /// The image's static api-monitor (`--image-bin`), measured beside `monitor`.
    pub image: Option<PathBuf>,
    pub fake_api: PathBuf,
    pub this: PathBuf,
}

impl Bins {
    fn find(dir: &Path, image: Option<&Path>) -> Result<Bins> {
        let this = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        let image = match image {
            Some(path) if path.is_file() => Some(path.to_path_buf()),
            Some(path) => return Err(format!("--image-bin {}: no such file", path.display())),
            None => None,
        };
        Ok(Bins {
            monitor: testkit::binary(dir, "api-monitor")?,
            image,
            fake_api: testkit::binary(dir, "fake-api")?,
            this,
        })
    }
}

/// What every step needs.
pub(crate) struct Ctx<'a> {
    pub o: &'a Options,
    pub bins: &'a Bins,
    pub fake: &'a FakeApi,
    pub sink: &'a SmtpServer,
    pub work: &'a Path,
}

fn run(o: &Options) -> Result<()> {
    let machine = Machine::now(&o.bin_dir);
    let bins = Bins::find(&o.bin_dir, o.image_bin.as_deref())?;
    // 10,000 targets and black holes want more descriptors than a shell's usual 1,024, here
    // (servers) and in the children, which inherit the limit.
    let fd_limit = procfs::raise_fd_limit()?;
    let work = std::env::temp_dir().join(format!("api-monitor-bench-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let result = steps(o, &bins, &work, &machine, fd_limit);
    match &result {
        Ok(_) if !o.keep => drop(fs::remove_dir_all(&work)),
        _ => eprintln!("bench: logs and databases kept in {}", work.display()),
    }
    let report = result?;
    print!("{report}");
    if let Some(out) = &o.out {
        fs::write(out, &report).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        progress(&format!("report written to {}", out.display()));
    }
    Ok(())
}

fn steps(
    o: &Options,
    bins: &Bins,
    work: &Path,
    machine: &Machine,
    fd_limit: u64,
) -> Result<String> {
    let fake = FakeApi::launch(&bins.fake_api, &[], Capture::default())?;
    let sink = SmtpServer::start();
    let ctx = Ctx { o, bins, fake: &fake, sink: &sink, work };
    progress(&format!(
        "fake-api on {}, SMTP sink on {}, work dir {}, open-file limit {fd_limit}",
        fake.addr(),
        sink.addr,
        work.display()
    ));
    let started = Instant::now();
    let mut r = Results {
        o,
        machine,
        cpu: None,
        baseline: None,
        latency: None,
        latency_image: None,
        shutdown: None,
        scale: None,
        holes: None,
        monit: None,
        cluster: None,
        load_end: String::new(),
    };
    if o.runs("cpu") {
        progress(&format!(
            "cpu: api-monitor, 1 target every {}, {} probes",
            flag_duration(o.fast_interval),
            o.probes
        ));
        r.cpu = Some(step_cpu(&ctx)?);
    }
    if o.runs("baseline") {
        progress(&format!("baseline: bare TCP + GET, {} probes", o.probes));
        r.baseline = Some(step_baseline(&ctx)?);
    }
    if o.runs("latency") {
        progress(&format!(
            "latency: {} outage/recovery cycles at {}",
            o.cycles,
            flag_duration(o.interval)
        ));
        let probe_time = r.baseline.as_ref().map_or(Duration::ZERO, |b| b.probe_wall);
        r.latency = Some(step_latency(&ctx, &bins.monitor, "latency", probe_time)?);
        if let Some(image) = &bins.image {
            progress("latency: the same with the image's static binary");
            r.latency_image = Some(step_latency(&ctx, image, "latency-image", probe_time)?);
        }
    }
    if o.runs("shutdown") {
        progress(&format!("shutdown: {} × SIGTERM while idle", o.shutdowns));
        r.shutdown = Some(step_shutdown(&ctx)?);
    }
    if o.runs("scale") {
        progress(&format!(
            "scale: {} targets every {}, {} rounds",
            o.scale_targets,
            flag_duration(o.scale_interval),
            o.scale_rounds
        ));
        r.scale = Some(scale::step_scale(&ctx, 0)?);
    }
    if o.runs("holes") {
        progress(&format!(
            "holes: {} targets every {}, {} of them black holes, {} rounds",
            o.scale_targets,
            flag_duration(o.scale_interval),
            o.holes,
            o.scale_rounds
        ));
        r.holes = Some(scale::step_scale(&ctx, o.holes)?);
    }
    if o.runs("monit") {
        progress(&format!(
            "monit: {} hosts every {} for monit and for api-monitor, {} rounds",
            o.monit_targets,
            flag_duration(o.monit_interval),
            o.monit_rounds
        ));
        r.monit = Some(scale::step_monit(&ctx)?);
    }
    if o.runs("cluster") {
        progress(&format!(
            "cluster: {} members, failover at lease {}, balance of {} targets every {}",
            3,
            o.cluster_leases.iter().map(|&l| flag_duration(l)).collect::<Vec<_>>().join(" and "),
            o.cluster_targets,
            flag_duration(o.cluster_interval)
        ));
        r.cluster = Some(cluster::step_cluster(&ctx)?);
    }
    r.load_end = procfs::loadavg();
    progress(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(render(&r))
}

pub(crate) fn progress(message: &str) {
    eprintln!("bench: {message}");
}

// ---------------------------------------------------------------------------------------------
// Steps

/// CPU and memory of a process over a window of probes.
struct Window {
    probes: usize,
    wall: Duration,
    /// CPU µs per probe in each slice.
    slice_us: Vec<f64>,
    /// CPU µs per probe over the whole window (process CPU clock).
    total_us: f64,
    /// The same from /proc/PID/stat utime and stime (clock ticks: coarse, a cross-check
    /// that also splits user and system time).
    user_us: f64,
    sys_us: f64,
    hwm_kib: u64,
    /// VmRSS at each slice boundary.
    rss_kib: Vec<u64>,
    threads: u64,
}

#[derive(Clone, Copy)]
struct Snap {
    cpu_ns: u64,
    ticks: (u64, u64),
    probes: usize,
    at: Instant,
}

fn snap(pid: u32, fake: &FakeApi, since: Instant) -> Result<Snap> {
    Ok(Snap {
        cpu_ns: procfs::cpu_ns(pid)?,
        ticks: procfs::ticks(pid)?,
        probes: fake.hits_since(since),
        at: Instant::now(),
    })
}

/// Waits for `warm` probes, then measures `probes` more in `slices` slices.
fn measure_window(
    ctx: &Ctx<'_>,
    proc: &mut Process,
    since: Instant,
    warm: usize,
    interval: Duration,
) -> Result<Window> {
    let (o, fake, pid) = (ctx.o, ctx.fake, proc.pid());
    let deadline = |n: usize| Instant::now() + interval.mul_f64(n as f64 * 4.0) + secs(30);
    wait_hits(fake, since, warm, deadline(warm), proc)?;
    let mut snaps = vec![snap(pid, fake, since)?];
    let mut rss_kib = Vec::new();
    for i in 1..=o.slices {
        let want = warm + o.probes * i / o.slices;
        wait_hits(fake, since, want, deadline(o.probes / o.slices), proc)?;
        snaps.push(snap(pid, fake, since)?);
        rss_kib.push(procfs::status(pid, "VmRSS")?);
    }
    let per_probe = |a: &Snap, b: &Snap| {
        (b.cpu_ns - a.cpu_ns) as f64 / 1000.0 / (b.probes - a.probes).max(1) as f64
    };
    let (first, last) = (snaps[0], snaps[snaps.len() - 1]);
    let probes = last.probes - first.probes;
    let ticks_us = |ticks: u64| {
        ticks as f64 * 1e6 / procfs::clock_ticks_per_second() as f64 / probes.max(1) as f64
    };
    Ok(Window {
        probes,
        wall: last.at - first.at,
        slice_us: snaps.windows(2).map(|w| per_probe(&w[0], &w[1])).collect(),
        total_us: per_probe(&first, &last),
        user_us: ticks_us(last.ticks.0 - first.ticks.0),
        sys_us: ticks_us(last.ticks.1 - first.ticks.1),
        hwm_kib: procfs::status(pid, "VmHWM")?,
        rss_kib,
        threads: procfs::threads(pid)?,
    })
}

struct CpuStep {
    window: Window,
    stop: Duration,
}

fn step_cpu(ctx: &Ctx<'_>) -> Result<CpuStep> {
    let o = ctx.o;
    let since = Instant::now();
    let args = monitor_args(ctx, &[ctx.fake.health_url()], o.fast_interval, "cpu");
    let mut monitor = spawn_monitor(ctx, &args, "cpu")?;
    let warm = (o.probes / 20).max(10);
    let window = measure_window(ctx, &mut monitor, since, warm, o.fast_interval)?;
    let stop = monitor.terminate(STOP_LIMIT)?;
    Ok(CpuStep { window, stop })
}

struct BaselineStep {
    window: Window,
    /// Median wall time of one bare probe: the "probe time" of the theoretical minimum.
    probe_wall: Duration,
    wall_min: Duration,
    wall_max: Duration,
}

fn step_baseline(ctx: &Ctx<'_>) -> Result<BaselineStep> {
    let o = ctx.o;
    let warm = (o.probes / 20).max(10);
    // Keeps probing for a while after the last snapshot, so it is still alive when it is taken.
    let margin = (Duration::from_secs(5).as_millis() / o.fast_interval.as_millis().max(1)) as usize;
    let since = Instant::now();
    let mut command = Command::new(&ctx.bins.this);
    command
        .args([
            "baseline".to_owned(),
            ctx.fake.addr().to_owned(),
            o.fast_interval.as_millis().to_string(),
            (warm + o.probes + margin.max(10)).to_string(),
        ])
        .env_clear();
    let capture = Capture { echo: Some("bench baseline: "), ..Capture::default() };
    let (mut proc, mut stdout) = Process::spawn(command, capture)?;
    let window = measure_window(ctx, &mut proc, since, warm, o.fast_interval)?;
    let status = proc.exit_within(STOP_LIMIT)?;
    if !status.success() {
        return Err(format!("the baseline failed ({status})"));
    }
    let mut text = String::new();
    stdout.read_to_string(&mut text).map_err(|e| format!("baseline output: {e}"))?;
    let field = |name: &str| -> Result<Duration> {
        token(&text, name)
            .and_then(|v| v.parse().ok())
            .map(Duration::from_nanos)
            .ok_or_else(|| format!("baseline printed no {name}: {text:?}"))
    };
    Ok(BaselineStep {
        window,
        probe_wall: field("median_ns=")?,
        wall_min: field("min_ns=")?,
        wall_max: field("max_ns=")?,
    })
}

/// One flip of the fake and the mail it caused.
struct Detection {
    /// Flip → mail received in full by the SMTP sink.
    raw: Duration,
    /// Flip → the first probe that saw the new mode (sampling, not the monitor's doing).
    phase: Duration,
    /// The probe that confirmed the transition → mail (record, compose, courier, SMTP).
    confirm_to_mail: Duration,
    /// `raw − phase − ((n − 1) × interval + probe time)`, in ms; may be slightly negative.
    excess_ms: f64,
}

struct LatencyStep {
    outages: Vec<Detection>,
    recoveries: Vec<Detection>,
    /// The theoretical minimums (phase 0): `(failures − 1) × interval + probe time`, and the
    /// same with successes.
    outage_min: Duration,
    recovery_min: Duration,
    /// CPU s per 60 probes while up, before the cycles (after the first settled state).
    cpu_per_60: f64,
    /// Probes of that steady window.
    probes: usize,
    /// CPU ms per outage + recovery cycle beyond its probes (2 rows, 2 emails).
    cycle_cpu_ms: f64,
    hwm_kib: u64,
    rss_kib: u64,
    /// RssAnon and RssFile from /proc/PID/status at the end.
    anon_kib: u64,
    file_kib: u64,
    smaps: Vec<Mapping>,
}

/// The latency step for the binary `bin`, named `name` (its log and database).
fn step_latency(
    ctx: &Ctx<'_>,
    bin: &Path,
    name: &str,
    probe_time: Duration,
) -> Result<LatencyStep> {
    let o = ctx.o;
    let since = Instant::now();
    let args = monitor_args(ctx, &[ctx.fake.health_url()], o.interval, name);
    let mut monitor = spawn_logged(bin, &args, &ctx.work.join(format!("{name}.log")))?;
    let pid = monitor.pid();
    // The first settled state (up) is recorded at the `successes`-th probe; one more to be sure.
    let settle = o.successes + 1;
    wait_hits(
        ctx.fake,
        since,
        settle,
        Instant::now() + o.interval * 4 * settle as u32 + secs(30),
        &mut monitor,
    )?;
    let start = snap(pid, ctx.fake, since)?;
    let steady = o.steady_probes;
    let deadline = Instant::now() + o.interval * 4 * steady as u32 + secs(30);
    wait_hits(ctx.fake, since, start.probes + steady, deadline, &mut monitor)?;
    let middle = snap(pid, ctx.fake, since)?;
    let probes = middle.probes - start.probes;
    let per_probe_ns = (middle.cpu_ns - start.cpu_ns) as f64 / probes.max(1) as f64;
    let (mut outages, mut recoveries) = (Vec::new(), Vec::new());
    for cycle in 1..=o.cycles {
        let down = detect(ctx, &mut monitor, "down", "OUTAGE", o.failures, probe_time)?;
        let up = detect(ctx, &mut monitor, "ok", "RECOVERED", o.successes, probe_time)?;
        progress(&format!(
            "  cycle {cycle}: outage mail {:.0} ms after the flip (phase {:.0} ms), recovery {:.0} ms (phase {:.0} ms)",
            ms(down.raw),
            ms(down.phase),
            ms(up.raw),
            ms(up.phase)
        ));
        outages.push(down);
        recoveries.push(up);
    }
    let end = snap(pid, ctx.fake, since)?;
    let cycles_ns =
        (end.cpu_ns - middle.cpu_ns) as f64 - per_probe_ns * (end.probes - middle.probes) as f64;
    let step = LatencyStep {
        outages,
        recoveries,
        outage_min: o.interval * (o.failures as u32 - 1) + probe_time,
        recovery_min: o.interval * (o.successes as u32 - 1) + probe_time,
        cpu_per_60: per_probe_ns * 60.0 / 1e9,
        probes,
        cycle_cpu_ms: cycles_ns / 1e6 / o.cycles as f64,
        hwm_kib: procfs::status(pid, "VmHWM")?,
        rss_kib: procfs::status(pid, "VmRSS")?,
        anon_kib: procfs::status(pid, "RssAnon")?,
        file_kib: procfs::status(pid, "RssFile")?,
        smaps: procfs::smaps(pid, "api-monitor")?,
    };
    monitor.terminate(STOP_LIMIT)?;
    Ok(step)
}

/// Flips the fake to `mode` `--lead` before the next probe is due and times the mail whose
/// subject contains `word`, confirmed by `needed` probes.
fn detect(
    ctx: &Ctx<'_>,
    monitor: &mut Process,
    mode: &str,
    word: &str,
    needed: usize,
    probe_time: Duration,
) -> Result<Detection> {
    let (o, fake) = (ctx.o, ctx.fake);
    let generous = o.interval * 4 + secs(30);
    let now = Instant::now();
    let last = wait_on(&fake.hits, Instant::now() + generous, "the next probe", monitor, |hits| {
        hits.iter().find(|h| h.at > now).map(|h| h.at)
    })?;
    sleep_until(last + o.interval - o.lead);
    let flip = fake.switch(mode)?;
    let deadline = flip + o.interval * (needed as u32 + 3) + secs(30);
    let what = format!("the {word} email");
    let mail = wait_on(&ctx.sink.mails, deadline, &what, monitor, |mails| {
        mails.iter().find(|m| m.at >= flip && m.subject().contains(word)).map(|m| m.at)
    })?;
    let seen = wait_on(&fake.hits, deadline, "the confirming probes", monitor, |hits| {
        let seen: Vec<Instant> = hits
            .iter()
            .filter(|h| h.at >= flip && h.answer == mode)
            .take(needed)
            .map(|h| h.at)
            .collect();
        (seen.len() == needed).then_some(seen)
    })?;
    let raw = mail - flip;
    let phase = seen[0] - flip;
    let minimum = o.interval * (needed as u32 - 1) + probe_time;
    Ok(Detection {
        raw,
        phase,
        confirm_to_mail: mail.saturating_duration_since(seen[needed - 1]),
        excess_ms: ms(raw) - ms(phase) - ms(minimum),
    })
}

struct ShutdownStep {
    /// SIGTERM → exit.
    stops: Vec<Duration>,
    /// Spawn → first probe at the fake (start-up: logging, SQLite, schema, thread start).
    first_probe: Vec<Duration>,
}

fn step_shutdown(ctx: &Ctx<'_>) -> Result<ShutdownStep> {
    let o = ctx.o;
    let mut step = ShutdownStep { stops: Vec::new(), first_probe: Vec::new() };
    for i in 0..o.shutdowns {
        let since = Instant::now();
        let args = monitor_args(ctx, &[ctx.fake.health_url()], o.interval, &format!("shutdown{i}"));
        let mut monitor = spawn_monitor(ctx, &args, &format!("shutdown{i}"))?;
        let deadline = Instant::now() + o.interval * 4 + secs(30);
        let first = wait_hits(ctx.fake, since, 1, deadline, &mut monitor)?;
        let second = wait_hits(ctx.fake, since, 2, deadline, &mut monitor)?;
        sleep_until(second + o.interval / 2);
        step.stops.push(monitor.terminate(STOP_LIMIT)?);
        step.first_probe.push(first - since);
    }
    Ok(step)
}

// ---------------------------------------------------------------------------------------------
// The baseline child: a bare TCP connect + GET + read, nothing else.

fn baseline_child(addr: &str, interval: Duration, count: usize) -> Result<()> {
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: bench-baseline\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n"
    );
    const OK: &[u8] = br#""status":"OK""#;
    let mut walls = Vec::with_capacity(count);
    let mut response = Vec::with_capacity(512);
    let mut due = Instant::now();
    for _ in 0..count {
        sleep_until(due);
        let started = Instant::now();
        response.clear();
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(secs(5))).map_err(|e| e.to_string())?;
        stream.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
        stream.read_to_end(&mut response).map_err(|e| format!("read: {e}"))?;
        walls.push(started.elapsed());
        let healthy =
            response.starts_with(b"HTTP/1.1 200 ") && response.windows(OK.len()).any(|w| w == OK);
        if !healthy {
            return Err(format!("unexpected answer: {}", String::from_utf8_lossy(&response)));
        }
        due = (due + interval).max(Instant::now());
    }
    walls.sort();
    let nanos = |d: Duration| d.as_nanos();
    println!(
        "median_ns={} min_ns={} max_ns={}",
        nanos(walls[walls.len() / 2]),
        nanos(walls[0]),
        nanos(walls[walls.len() - 1])
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Child processes

fn monitor_args(ctx: &Ctx<'_>, urls: &[String], interval: Duration, name: &str) -> Vec<String> {
    let o = ctx.o;
    let mut args = vec!["run".to_owned()];
    for url in urls {
        args.extend(["--url".to_owned(), url.clone()]);
    }
    let db = ctx.work.join(format!("{name}.db"));
    args.extend([
        "--interval".to_owned(),
        flag_duration(interval),
        "--failures".to_owned(),
        o.failures.to_string(),
        "--successes".to_owned(),
        o.successes.to_string(),
        "--db".to_owned(),
        format!("sqlite://{}", db.display()),
        "--smtp".to_owned(),
        format!("smtp://{}", ctx.sink.addr),
        "--support".to_owned(),
        "oncall@example.com".to_owned(),
        "--from".to_owned(),
        "api-monitor@example.com".to_owned(),
    ]);
    args
}

/// Starts `api-monitor` with a clean environment (no API_URL, CONFIG, … from the caller's
/// shell), its log in the work dir.
fn spawn_monitor(ctx: &Ctx<'_>, args: &[String], name: &str) -> Result<Process> {
    spawn_logged(&ctx.bins.monitor, args, &ctx.work.join(format!("{name}.log")))
}

/// Starts `program` with a clean environment, its stderr collected and written to `log`, its
/// stdout read and dropped.
pub(crate) fn spawn_logged(program: &Path, args: &[String], log: &Path) -> Result<Process> {
    let mut command = Command::new(program);
    command.args(args).env_clear();
    let capture = Capture { tee: Some(log.to_path_buf()), ..Capture::default() };
    let (process, stdout) = Process::spawn(command, capture)?;
    testkit::read_lines(stdout, |_, _| {});
    Ok(process)
}

/// How long a child may take to exit after SIGTERM before the step fails.
pub(crate) const STOP_LIMIT: Duration = Duration::from_secs(60);

/// [`Log::wait_for`] while `proc` runs: its exit, or the timeout, is an error that ends with
/// the last lines of its log.
pub(crate) fn wait_on<T, R>(
    log: &Log<T>,
    deadline: Instant,
    what: &str,
    proc: &mut Process,
    check: impl FnMut(&[T]) -> Option<R>,
) -> Result<R> {
    let result = log.wait_for(deadline, what, check, || proc.alive());
    result.map_err(|e| if e.starts_with("timed out") { format!("{e}{}", proc.tail(8)) } else { e })
}

/// When the `n`-th health request since `since` arrived at the fake API (waiting for it).
fn wait_hits(
    fake: &FakeApi,
    since: Instant,
    n: usize,
    deadline: Instant,
    proc: &mut Process,
) -> Result<Instant> {
    let what = format!("{n} probes at the fake API");
    wait_on(&fake.hits, deadline, &what, proc, |hits| {
        let first = hits.partition_point(|h| h.at < since);
        hits.get(first + n - 1).map(|h| h.at)
    })
}

struct Machine {
    date: String,
    cpu: String,
    cpus: usize,
    kernel: String,
    load: String,
    git: String,
    rustc: String,
    monitor_size: Option<u64>,
}

impl Machine {
    fn now(bin_dir: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let output = |program: &str, args: &[&str]| -> Option<String> {
            let out = Command::new(program).args(args).stderr(Stdio::null()).output().ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let git = match output("git", &["rev-parse", "--short", "HEAD"]) {
            Some(commit) => {
                let dirty = output(
                    "git",
                    &["status", "--porcelain", "--", "src", "fake_api", "Cargo.toml", "Cargo.lock"],
                )
                .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{commit} + uncommitted changes in src/, fake_api/ or Cargo.* (built from the working tree)")
                } else {
                    commit
                }
            }
            None => "unknown".into(),
        };
        Machine {
            date: utc_now(),
            cpu,
            cpus,
            kernel,
            load: procfs::loadavg(),
            git,
            rustc: output("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            monitor_size: fs::metadata(bin_dir.join("api-monitor")).ok().map(|m| m.len()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}

/// The value after `key` up to the next space, e.g. `token(line, "target=")`.
fn utc_now() -> String {
    let secs =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest / 60 % 60, rest % 60)
}

/// Min, median and max.
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

fn spread(values: &[f64]) -> Spread {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Spread { min: f64::NAN, median: f64::NAN, max: f64::NAN };
    }
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] };
    Spread { min: v[0], median, max: v[v.len() - 1] }
}

/// Nearest-rank percentile (`p` in 0–100).
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(crate) fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

// ---------------------------------------------------------------------------------------------
// The report

/// What the steps measured; `None` for a step left out with `--steps`.
struct Results<'a> {
    o: &'a Options,
    machine: &'a Machine,
    cpu: Option<CpuStep>,
    baseline: Option<BaselineStep>,
    latency: Option<LatencyStep>,
    /// The latency step again with the image's static binary (`--image-bin`).
    latency_image: Option<LatencyStep>,
    shutdown: Option<ShutdownStep>,
    scale: Option<scale::ScaleStep>,
    holes: Option<scale::ScaleStep>,
    monit: Option<scale::MonitStep>,
    cluster: Option<cluster::ClusterStep>,
    load_end: String,
}

/// Goals of issue 6.
const GOAL_RSS_KIB: u64 = 3 * 1024;
const GOAL_CPU_PER_60: f64 = 0.03;
const GOAL_EXCESS_MS: f64 = 100.0;

fn render(r: &Results<'_>) -> String {
    let (o, m) = (r.o, r.machine);
    let mut s = String::new();
    let w = &mut s;
    let load1: f64 = m.load.split(' ').next().and_then(|l| l.parse().ok()).unwrap_or(0.0);

    let _ = writeln!(w, "# api-monitor benchmark\n");
    if o.smoke {
        let _ = writeln!(w, "**Smoke run (`--smoke`): tiny sizes; the numbers below are not measurements to quote.**\n");
    }
    let _ = writeln!(w, "- date: {}", m.date);
    let _ = writeln!(w, "- machine: {} × {}, Linux {}", m.cpus, m.cpu, m.kernel);
    let _ = writeln!(
        w,
        "- load average (1/5/15 min): {} at the start, {} at the end",
        m.load, r.load_end
    );
    if load1 >= 0.5 {
        let _ = writeln!(
            w,
            "- **the machine was busy** (load {load1} on {} CPUs: other work, e.g. compiles, shared it): \
             CPU times and latencies are noisier and higher than on an idle machine",
            m.cpus
        );
    }
    let _ = writeln!(w, "- build: commit {}; {}", m.git, m.rustc);
    let _ = writeln!(
        w,
        "- binaries: `{}`{}",
        o.bin_dir.display(),
        m.monitor_size
            .map(|b| format!(" (api-monitor {:.1} MiB on disk)", b as f64 / 1048576.0))
            .unwrap_or_default()
    );
    if let Some(image) = &o.image_bin {
        let size = std::fs::metadata(image).map(|m| m.len() as f64 / 1048576.0).unwrap_or(0.0);
        let _ = writeln!(
            w,
            "- the image's binary: `{}` ({size:.1} MiB on disk; static, musl), in the latency and monit steps",
            image.display()
        );
    }
    let _ = writeln!(w, "- steps: {}; sizes: {}", o.steps.join(", "), sizes(o));
    let _ = writeln!(w, "- command: `make bench` (`bench --help` for the knobs); everything on 127.0.0.1 (fake-api, the bench's SMTP sink and API servers, SQLite in a temp dir)\n");
    let (Some(cpu_step), Some(base_step), Some(lat)) = (&r.cpu, &r.baseline, &r.latency) else {
        let _ = writeln!(w, "(The sections on CPU per probe, memory and detection latency need the cpu, baseline and latency steps.)\n");
        shutdown_section(w, r);
        scale::render(w, r.o, r.scale.as_ref(), r.holes.as_ref(), r.monit.as_ref());
        if let Some(c) = &r.cluster {
            cluster::render(w, r.o, c);
        }
        return s;
    };
    let (cpu, base) = (&cpu_step.window, &base_step.window);
    let cpu_med = spread(&cpu.slice_us);
    let base_med = spread(&base.slice_us);
    let fast_per_60 = cpu_med.median * 60.0 / 1e6;
    let outage = spread(&lat.outages.iter().map(|d| ms(d.raw)).collect::<Vec<_>>());
    let recovery = spread(&lat.recoveries.iter().map(|d| ms(d.raw)).collect::<Vec<_>>());
    let out_excess = spread(&lat.outages.iter().map(|d| d.excess_ms).collect::<Vec<_>>());
    let rec_excess = spread(&lat.recoveries.iter().map(|d| d.excess_ms).collect::<Vec<_>>());
    let range = |s: &Spread, unit: f64| {
        format!("{:.2}–{:.2} s (median {:.2})", s.min / unit, s.max / unit, s.median / unit)
    };

    let _ = writeln!(w, "## Against the targets to beat\n");
    let _ = writeln!(w, "Workload of the targets: 1 target, 1 s interval, 2 failures to alert, SMTP sink on loopback.\n");
    let _ = writeln!(
        w,
        "| | monit 5.33 | blackbox_exporter + Prometheus + Alertmanager | goal | api-monitor | |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    let _ = writeln!(
        w,
        "| peak RSS (VmHWM), 1 target at {}, SMTP, SQLite | 7.3 MiB | 95 MiB | ≤ 3 MiB | {} (at the end {}: {} anonymous + {} file-backed) | {} |",
        flag_duration(o.interval),
        mib(lat.hwm_kib),
        mib(lat.rss_kib),
        mib(lat.anon_kib),
        mib(lat.file_kib),
        verdict(lat.hwm_kib <= GOAL_RSS_KIB)
    );
    if let Some(image) = &r.latency_image {
        let _ = writeln!(
            w,
            "| … the image's static binary (musl), the same run after it | | | ≤ 3 MiB | {} (at the end {}: {} anonymous + {} file-backed); {:.4} CPU s per 60 probes | {} |",
            mib(image.hwm_kib),
            mib(image.rss_kib),
            mib(image.anon_kib),
            mib(image.file_kib),
            image.cpu_per_60,
            verdict(image.hwm_kib <= GOAL_RSS_KIB)
        );
    }
    let _ = writeln!(
        w,
        "| CPU s per 60 probes at {} ({} probes while up) | 0.34 | 0.21 | ≤ 0.03 | {:.4} ({:.0} µs/probe) | {} |",
        flag_duration(o.interval),
        lat.probes,
        lat.cpu_per_60,
        lat.cpu_per_60 / 60.0 * 1e6,
        verdict(lat.cpu_per_60 <= GOAL_CPU_PER_60)
    );
    let _ = writeln!(
        w,
        "| CPU s per 60 probes, from µs/probe at {} (median slice) | | | ≤ 0.03 | {:.4} ({:.0} µs/probe) | {} |",
        flag_duration(o.fast_interval),
        fast_per_60,
        cpu_med.median,
        verdict(fast_per_60 <= GOAL_CPU_PER_60)
    );
    let _ = writeln!(
        w,
        "| outage mail after the flip | 1.3–1.6 s | 2.2–3.5 s | ≤ min + 100 ms; min = {:.3} s | {} | |",
        lat.outage_min.as_secs_f64(),
        range(&outage, 1000.0)
    );
    let _ = writeln!(
        w,
        "| recovery mail after the flip | 0.2–0.8 s | | ≤ min + 100 ms; min = {:.3} s ({} successes) | {} | |",
        lat.recovery_min.as_secs_f64(),
        o.successes,
        range(&recovery, 1000.0)
    );
    let _ = writeln!(
        w,
        "| excess over the theoretical minimum, worst cycle (outage / recovery) | | | ≤ 100 ms | {:.0} ms / {:.0} ms | {} |",
        out_excess.max,
        rec_excess.max,
        verdict(out_excess.max <= GOAL_EXCESS_MS && rec_excess.max <= GOAL_EXCESS_MS)
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Each outage + recovery cycle costs {:.1} ms of CPU beyond its probes (2 SQLite rows with \
         history queries, 2 emails composed and sent).",
        lat.cycle_cpu_ms
    );
    let _ = writeln!(
        w,
        "Theoretical minimum = (failures − 1) × interval + probe time (the median bare probe below, {:.2} ms). \
         Our flips are placed {} before a probe is due, so the raw times include a small phase \
         (flip → first probe seeing it); a flip at a random moment adds up to one interval (½ on average) for any poller. \
         The excess subtracts the measured phase, so it is what the monitor adds. \
         monit's 0.2–0.8 s recovery is with one success; ours needs `--successes {}` probes.\n",
        ms(base_step.probe_wall),
        flag_duration(o.lead),
        o.successes
    );

    let _ = writeln!(w, "## CPU per probe (1 target every {})\n", flag_duration(o.fast_interval));
    let _ = writeln!(w, "| | probes | CPU µs/probe min / median / max (per slice) | whole window | /proc ticks: user + system | peak RSS | steady RSS (median) | threads |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    for (name, win) in [("api-monitor run", cpu), ("baseline: TcpStream + GET + read", base)] {
        let sp = spread(&win.slice_us);
        let rss = spread(&win.rss_kib.iter().map(|&k| k as f64).collect::<Vec<_>>());
        let _ = writeln!(
            w,
            "| {name} | {} in {:.0} s | {:.1} / {:.1} / {:.1} | {:.1} | {:.0} + {:.0} | {} | {} | {} |",
            win.probes,
            win.wall.as_secs_f64(),
            sp.min,
            sp.median,
            sp.max,
            win.total_us,
            win.user_us,
            win.sys_us,
            mib(win.hwm_kib),
            mib(rss.median as u64),
            win.threads
        );
    }
    let _ = writeln!(
        w,
        "\nRatio api-monitor / baseline (median slices): **{:.1}×** ({:.1} µs more per probe). \
         Bare probe wall time: median {:.2} ms (min {:.2}, max {:.2}). \
         CPU is the child's process CPU clock (user + system, all threads including exited ones) \
         over slices of the run, probes counted at the fake API; the ticks column is \
         /proc/PID/stat utime and stime over the whole window (10 ms resolution). SIGTERM → exit after this run: {:.1} ms.\n",
        cpu_med.median / base_med.median,
        cpu_med.median - base_med.median,
        ms(base_step.probe_wall),
        ms(base_step.wall_min),
        ms(base_step.wall_max),
        ms(cpu_step.stop)
    );

    let _ = writeln!(w, "## Where the RSS goes (/proc/PID/smaps, 1 target at 1 s, after {} outage/recovery cycles)\n", lat.outages.len());
    smaps_table(w, &lat.smaps);
    let _ = writeln!(
        w,
        "For comparison, the baseline above (a std-only Rust binary doing the bare exchange, \
         dynamically linked to the same libc) peaks at {}.\n",
        mib(base.hwm_kib)
    );

    let _ = writeln!(
        w,
        "## Detection latency (interval {}, failures {}, successes {})\n",
        flag_duration(o.interval),
        o.failures,
        o.successes
    );
    let _ = writeln!(w, "| cycle | outage mail after flip | phase | confirming probe → mail | excess | recovery mail after flip | phase | confirming probe → mail | excess |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
    for (i, (d, u)) in lat.outages.iter().zip(&lat.recoveries).enumerate() {
        let _ = writeln!(
            w,
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            i + 1,
            ms(d.raw),
            ms(d.phase),
            ms(d.confirm_to_mail),
            d.excess_ms,
            ms(u.raw),
            ms(u.phase),
            ms(u.confirm_to_mail),
            u.excess_ms
        );
    }
    let _ = writeln!(
        w,
        "| min / median / max | {} | | | {:.1} / {:.1} / {:.1} ms | {} | | | {:.1} / {:.1} / {:.1} ms |",
        range(&outage, 1000.0),
        out_excess.min,
        out_excess.median,
        out_excess.max,
        range(&recovery, 1000.0),
        rec_excess.min,
        rec_excess.median,
        rec_excess.max
    );
    let _ = writeln!(
        w,
        "\nFlip = fake-api's `mode_change` log line; mail = the bench's SMTP sink having the whole message; both stamped by the bench as it \
         reads the children's output (same monotonic clock). Confirming probe = request number {} (outage) or {} (recovery) that saw the new mode, \
         as logged by fake-api; from there: the response, detector, SQLite insert, email composition, courier wake-up, SMTP.\n",
        o.failures, o.successes
    );

    shutdown_section(w, r);
    scale::render(w, r.o, r.scale.as_ref(), r.holes.as_ref(), r.monit.as_ref());
    if let Some(c) = &r.cluster {
        cluster::render(w, r.o, c);
    }
    s
}

fn shutdown_section(w: &mut String, r: &Results<'_>) {
    let Some(shutdown) = &r.shutdown else { return };
    let stops = spread(&shutdown.stops.iter().map(|&d| ms(d)).collect::<Vec<_>>());
    let first = spread(&shutdown.first_probe.iter().map(|&d| ms(d)).collect::<Vec<_>>());
    let _ = writeln!(w, "## Shutdown\n");
    let _ = writeln!(w, "| | runs | min | median | max |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    let _ = writeln!(w, "| SIGTERM while idle (half an interval after a probe) → process exited | {} | {:.1} ms | {:.1} ms | {:.1} ms |", shutdown.stops.len(), stops.min, stops.median, stops.max);
    let _ = writeln!(w, "| start → first probe at the fake API (start-up) | {} | {:.1} ms | {:.1} ms | {:.1} ms |\n", shutdown.first_probe.len(), first.min, first.median, first.max);
    let _ = writeln!(w, "Exit times are polled every 0.2 ms.\n");
}

/// The sizes of the steps that run, for the report's header.
fn sizes(o: &Options) -> String {
    let mut parts = Vec::new();
    if o.runs("cpu") || o.runs("baseline") {
        parts.push(format!(
            "{} probes at {} in {} slices",
            o.probes,
            flag_duration(o.fast_interval),
            o.slices
        ));
    }
    if o.runs("latency") {
        parts.push(format!(
            "{} outage/recovery cycles at {} (failures {}, successes {}, flip {} before a probe is due)",
            o.cycles, flag_duration(o.interval), o.failures, o.successes, flag_duration(o.lead)
        ));
    }
    if o.runs("shutdown") {
        parts.push(format!("{} shutdowns", o.shutdowns));
    }
    if o.runs("scale") || o.runs("holes") {
        parts.push(format!(
            "{} targets at {} (timeout {}) for {} rounds, {} of them black holes in the holes step",
            o.scale_targets,
            flag_duration(o.scale_interval),
            flag_duration(o.scale_timeout),
            o.scale_rounds,
            o.holes
        ));
    }
    if o.runs("monit") {
        parts.push(format!(
            "{} monit hosts at {} for {} rounds",
            o.monit_targets,
            flag_duration(o.monit_interval),
            o.monit_rounds
        ));
    }
    if o.runs("cluster") {
        parts.push(format!(
            "cluster: 3 members, failover at lease {} with {} kills each, steady window {}, balance of {} targets at {} for {} rounds",
            o.cluster_leases.iter().map(|&l| flag_duration(l)).collect::<Vec<_>>().join(" and "),
            o.cluster_failovers,
            flag_duration(o.cluster_window),
            o.cluster_targets,
            flag_duration(o.cluster_interval),
            o.cluster_rounds
        ));
    }
    parts.join("; ")
}

pub(crate) fn smaps_table(w: &mut String, list: &[Mapping]) {
    let sum = |f: fn(&Mapping) -> u64| list.iter().map(f).sum::<u64>();
    let _ = writeln!(w, "| mapping | count | RSS | PSS | private |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    for m in list {
        let _ = writeln!(
            w,
            "| {} | {} | {} KiB | {} KiB | {} KiB |",
            m.kind, m.mappings, m.rss_kib, m.pss_kib, m.private_kib
        );
    }
    let _ = writeln!(
        w,
        "| **total** | | **{} KiB** | **{} KiB** | **{} KiB** |\n",
        sum(|m| m.rss_kib),
        sum(|m| m.pss_kib),
        sum(|m| m.private_kib)
    );
    let _ = writeln!(
        w,
        "PSS divides each shared page among the processes mapping it (libc is shared with every \
         process on the machine); private = mapped by this process only, which for the \
         binary's own file pages includes clean, reclaimable page cache.\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_spreads() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        let s = spread(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 10.0));
    }
}
