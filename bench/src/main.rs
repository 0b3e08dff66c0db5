//! `bench`: measures the api-monitor binaries on loopback and writes a markdown report.
//!
//! `make bench` runs it on the release binaries (`bench --out bench/RESULTS.md`); `make
//! bench-smoke` runs every step with tiny sizes (`--smoke`) so it cannot rot. One `fake-api`
//! and one `mail-sink` are started on 127.0.0.1 for the whole run; then, one after another:
//!
//! 1. **cpu** — `api-monitor run` with one target at a fast interval: CPU time per probe over
//!    slices of the run, read from the child's process CPU clock (`clock_getcpuclockid`: ns,
//!    every thread, including the ones that have exited, such as a name lookup's), with
//!    `/proc/PID/stat` ticks as a cross-check; peak (`VmHWM`) and steady (`VmRSS`) RSS and the
//!    `/proc/PID/smaps` breakdown. Probes are counted at the fake API.
//! 2. **baseline** — the same for `bench baseline`: a bare `TcpStream` connect + `GET` + read
//!    to the end on the same schedule, measured the same way, so the ratio says how far the
//!    monitor is from the cost of the network exchange itself.
//! 3. **latency** — `--interval 1s --failures 2 --successes 2` with SMTP to mail-sink. The fake
//!    is flipped down a little (`--lead`) before a probe is due; the time runs from the flip
//!    (fake-api's `mode_change` line) to the OUTAGE mail printed by mail-sink, and the same for
//!    the flip back and the RECOVERED mail. The phase (flip → first probe that sees the new
//!    mode) is measured, so the excess over the theoretical minimum is independent of it.
//!    Also the CPU per 60 probes and the peak RSS of this workload, which is monit's.
//! 4. **shutdown** — SIGTERM halfway between two probes; until the process has exited.
//! 5. **scale** — many targets (`/health?i=N`) with `-v`: probe start lateness against each
//!    loop's fixed-rate schedule, from the monitor's own log (`watching` = tick 0, then
//!    `probe ok … latency_ms=` lines), probe latency, RSS, threads.
//!
//! No step asserts a timing. A step that cannot take its measurement (no mail before a generous
//! deadline, a child that exits early or non-zero after SIGTERM, …) fails the run: exit 1.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Result<T> = std::result::Result<T, String>;

const HELP: &str = "\
bench: benchmark api-monitor on loopback against the targets of issue 6

Usage: bench [--smoke] [--keep] [--out FILE] [--bin-dir DIR] [SIZES]

  --smoke               tiny sizes, every step still runs (seconds, for make bench-smoke)
  --keep                keep the work dir (monitor logs, SQLite databases) afterwards
  --out FILE            also write the report to FILE (it is always printed on stdout)
  --bin-dir DIR         where api-monitor, fake-api and mail-sink are
                        (default: this binary's directory)
SIZES (full / --smoke), also from the environment as BENCH_<NAME>, e.g. BENCH_PROBES=500:
  --probes N            probes measured in the cpu and baseline steps (2000 / 50)
  --fast-interval DUR   their interval (50ms / 50ms)
  --slices N            slices of those runs, for min/median/max (10 / 2)
  --cycles N            outage + recovery cycles (5 / 1)
  --steady-probes N     probes at --interval while up, before them, for CPU per probe (60 / 3)
  --interval DUR        interval of the latency and shutdown steps (1s / 1s)
  --failures N          --failures of the latency step (2 / 2)
  --successes N         --successes of the latency step (2 / 2)
  --lead DUR            flip the fake this long before the next probe is due (50ms / 50ms)
  --shutdowns N         SIGTERM repetitions (5 / 1)
  --scale-targets N     targets of the scale step (1000 / 10)
  --scale-interval DUR  their interval (5s / 500ms)
  --scale-rounds N      rounds of probes in the scale step (10 / 3)
DUR is 50ms, 1s, 2m. Exit 0 when every measurement was taken, 1 when a step failed, 2 on a
bad command line. `bench baseline ADDR INTERVAL_MS COUNT` is the baseline child (internal).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("baseline") {
        return match baseline_child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench baseline: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match Options::parse(&args, |k| std::env::var(k).ok()) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Clone, Debug)]
struct Options {
    smoke: bool,
    /// Keep the work dir (logs, databases) after a successful run too.
    keep: bool,
    out: Option<PathBuf>,
    bin_dir: PathBuf,
    probes: usize,
    fast_interval: Duration,
    slices: usize,
    cycles: usize,
    steady_probes: usize,
    interval: Duration,
    failures: usize,
    successes: usize,
    lead: Duration,
    shutdowns: usize,
    scale_targets: usize,
    scale_interval: Duration,
    scale_rounds: usize,
}

/// The options that take a value, as flags (`--name`) and variables (`BENCH_NAME`).
const KNOBS: &[&str] = &[
    "out",
    "bin-dir",
    "probes",
    "fast-interval",
    "slices",
    "cycles",
    "steady-probes",
    "interval",
    "failures",
    "successes",
    "lead",
    "shutdowns",
    "scale-targets",
    "scale-interval",
    "scale-rounds",
];

impl Options {
    fn defaults(smoke: bool) -> Options {
        let bin_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("target/release"));
        let pick = |full: usize, tiny: usize| if smoke { tiny } else { full };
        Options {
            smoke,
            keep: false,
            out: None,
            bin_dir,
            probes: pick(2000, 50),
            fast_interval: Duration::from_millis(50),
            slices: pick(10, 2),
            cycles: pick(5, 1),
            steady_probes: pick(60, 3),
            interval: Duration::from_secs(1),
            failures: 2,
            successes: 2,
            lead: Duration::from_millis(50),
            shutdowns: pick(5, 1),
            scale_targets: pick(1000, 10),
            scale_interval: if smoke { Duration::from_millis(500) } else { Duration::from_secs(5) },
            scale_rounds: pick(10, 3),
        }
    }

    /// `Ok(None)` for `--help`. Flags win over `BENCH_*` variables, which win over defaults.
    fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Option<Options>> {
        let truthy = |v: Option<String>| v.is_some_and(|v| !v.is_empty() && v != "0");
        let smoke = args.iter().any(|a| a == "--smoke") || truthy(env("BENCH_SMOKE"));
        let mut options = Options::defaults(smoke);
        options.keep = args.iter().any(|a| a == "--keep") || truthy(env("BENCH_KEEP"));
        for knob in KNOBS {
            let var = format!("BENCH_{}", knob.to_uppercase().replace('-', "_"));
            if let Some(value) = env(&var) {
                options.set(knob, &value).map_err(|e| format!("{var}: {e}"))?;
            }
        }
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            if arg == "--smoke" || arg == "--keep" {
                continue;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, value.to_owned()),
                None => {
                    let value = rest.next().ok_or_else(|| format!("--{flag} needs a value"))?;
                    (flag, value.clone())
                }
            };
            if !KNOBS.contains(&name) {
                return Err(format!("unknown option --{name}"));
            }
            options.set(name, &value).map_err(|e| format!("--{name}: {e}"))?;
        }
        if options.lead >= options.interval {
            return Err("--lead must be shorter than --interval".into());
        }
        Ok(Some(options))
    }

    fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let count = || -> Result<usize> {
            match value.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{value:?} is not a positive whole number")),
            }
        };
        match name {
            "out" => self.out = Some(PathBuf::from(value)),
            "bin-dir" => self.bin_dir = PathBuf::from(value),
            "probes" => self.probes = count()?,
            "fast-interval" => self.fast_interval = parse_duration(value)?,
            "slices" => self.slices = count()?,
            "cycles" => self.cycles = count()?,
            "steady-probes" => self.steady_probes = count()?,
            "interval" => self.interval = parse_duration(value)?,
            "failures" => self.failures = count()?,
            "successes" => self.successes = count()?,
            "lead" => self.lead = parse_duration(value)?,
            "shutdowns" => self.shutdowns = count()?,
            "scale-targets" => self.scale_targets = count()?,
            "scale-interval" => self.scale_interval = parse_duration(value)?,
            "scale-rounds" => self.scale_rounds = count()?,
            _ => return Err(format!("unknown option {name}")),
        }
        Ok(())
    }
}

/// `50ms`, `1s`, `2m` (whole numbers).
fn parse_duration(text: &str) -> Result<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration like 50ms or 1s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{text:?} is not a duration like 50ms or 1s")),
    }
}

/// The monitor's spelling of a duration (`--interval 50ms`, `1s`).
fn flag_duration(d: Duration) -> String {
    match d.as_millis() {
        ms if ms > 0 && ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

// ---------------------------------------------------------------------------------------------
// The run

struct Bins {
    monitor: PathBuf,
    fake_api: PathBuf,
    mail_sink: PathBuf,
    this: PathBuf,
}

impl Bins {
    fn find(dir: &Path) -> Result<Bins> {
        let at = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} not found: build first (cargo build --release --workspace --bins)",
                    path.display()
                ))
            }
        };
        let this = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        Ok(Bins {
            monitor: at("api-monitor")?,
            fake_api: at("fake-api")?,
            mail_sink: at("mail-sink")?,
            this,
        })
    }
}

/// What every step needs.
struct Ctx<'a> {
    o: &'a Options,
    bins: &'a Bins,
    fake: &'a FakeApi,
    sink: &'a MailSink,
    work: &'a Path,
}

fn run(o: &Options) -> Result<()> {
    let machine = Machine::now(&o.bin_dir);
    let bins = Bins::find(&o.bin_dir)?;
    let work = std::env::temp_dir().join(format!("api-monitor-bench-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let result = steps(o, &bins, &work, &machine);
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

fn steps(o: &Options, bins: &Bins, work: &Path, machine: &Machine) -> Result<String> {
    let fake = FakeApi::start(&bins.fake_api)?;
    let sink = MailSink::start(&bins.mail_sink)?;
    let ctx = Ctx { o, bins, fake: &fake, sink: &sink, work };
    progress(&format!(
        "fake-api on {}, mail-sink on {}, work dir {}",
        fake.addr,
        sink.addr,
        work.display()
    ));
    let started = Instant::now();
    progress(&format!(
        "cpu: api-monitor, 1 target every {}, {} probes",
        flag_duration(o.fast_interval),
        o.probes
    ));
    let cpu = step_cpu(&ctx)?;
    progress(&format!("baseline: bare TCP + GET, {} probes", o.probes));
    let baseline = step_baseline(&ctx)?;
    progress(&format!(
        "latency: {} outage/recovery cycles at {}",
        o.cycles,
        flag_duration(o.interval)
    ));
    let latency = step_latency(&ctx, baseline.probe_wall)?;
    progress(&format!("shutdown: {} × SIGTERM while idle", o.shutdowns));
    let shutdown = step_shutdown(&ctx)?;
    progress(&format!(
        "scale: {} targets every {}, {} rounds",
        o.scale_targets,
        flag_duration(o.scale_interval),
        o.scale_rounds
    ));
    let scale = step_scale(&ctx)?;
    let load_end = read_loadavg();
    progress(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(render(&Results { o, machine, cpu, baseline, latency, shutdown, scale, load_end }))
}

fn progress(message: &str) {
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
        cpu_ns: process_cpu_ns(pid)?,
        ticks: process_ticks(pid)?,
        probes: fake.hits_since(since),
        at: Instant::now(),
    })
}

/// Waits for `warm` probes, then measures `probes` more in `slices` slices.
fn measure_window(
    ctx: &Ctx<'_>,
    proc: &mut Proc,
    since: Instant,
    warm: usize,
    interval: Duration,
) -> Result<Window> {
    let (o, fake, pid) = (ctx.o, ctx.fake, proc.pid());
    let deadline = |n: usize| Instant::now() + interval.mul_f64(n as f64 * 4.0) + secs(30);
    fake.wait_hits(since, warm, deadline(warm), proc)?;
    let mut snaps = vec![snap(pid, fake, since)?];
    let mut rss_kib = Vec::new();
    for i in 1..=o.slices {
        let want = warm + o.probes * i / o.slices;
        fake.wait_hits(since, want, deadline(o.probes / o.slices), proc)?;
        snaps.push(snap(pid, fake, since)?);
        rss_kib.push(status_kib(pid, "VmRSS")?);
    }
    let per_probe = |a: &Snap, b: &Snap| {
        (b.cpu_ns - a.cpu_ns) as f64 / 1000.0 / (b.probes - a.probes).max(1) as f64
    };
    let (first, last) = (snaps[0], snaps[snaps.len() - 1]);
    let probes = last.probes - first.probes;
    let ticks_us =
        |ticks: u64| ticks as f64 * 1e6 / clock_ticks_per_second() as f64 / probes.max(1) as f64;
    Ok(Window {
        probes,
        wall: last.at - first.at,
        slice_us: snaps.windows(2).map(|w| per_probe(&w[0], &w[1])).collect(),
        total_us: per_probe(&first, &last),
        user_us: ticks_us(last.ticks.0 - first.ticks.0),
        sys_us: ticks_us(last.ticks.1 - first.ticks.1),
        hwm_kib: status_kib(pid, "VmHWM")?,
        rss_kib,
        threads: status_kib(pid, "Threads")?,
    })
}

struct CpuStep {
    window: Window,
    stop: Duration,
}

fn step_cpu(ctx: &Ctx<'_>) -> Result<CpuStep> {
    let o = ctx.o;
    let since = Instant::now();
    let args = monitor_args(ctx, &[ctx.fake.url(None)], o.fast_interval, "cpu", false);
    let mut monitor = spawn_monitor(ctx, &args, "cpu")?;
    let warm = (o.probes / 20).max(10);
    let window = measure_window(ctx, &mut monitor, since, warm, o.fast_interval)?;
    let stop = monitor.terminate()?;
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
    let child = Command::new(&ctx.bins.this)
        .args([
            "baseline".to_owned(),
            ctx.fake.addr.clone(),
            o.fast_interval.as_millis().to_string(),
            (warm + o.probes + margin.max(10)).to_string(),
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the baseline: {e}"))?;
    let mut proc = Proc::new(child, "bench baseline", None);
    let window = measure_window(ctx, &mut proc, since, warm, o.fast_interval)?;
    let mut stdout = proc.child.stdout.take().ok_or("baseline stdout")?;
    let status = proc.child.wait().map_err(|e| format!("baseline: {e}"))?;
    proc.done = true;
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
    /// Flip → mail printed by mail-sink.
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

fn step_latency(ctx: &Ctx<'_>, probe_time: Duration) -> Result<LatencyStep> {
    let o = ctx.o;
    let since = Instant::now();
    let args = monitor_args(ctx, &[ctx.fake.url(None)], o.interval, "latency", false);
    let mut monitor = spawn_monitor(ctx, &args, "latency")?;
    let pid = monitor.pid();
    // The first settled state (up) is recorded at the `successes`-th probe; one more to be sure.
    let settle = o.successes + 1;
    ctx.fake.wait_hits(
        since,
        settle,
        Instant::now() + o.interval * 4 * settle as u32 + secs(30),
        &mut monitor,
    )?;
    let start = snap(pid, ctx.fake, since)?;
    let steady = o.steady_probes;
    let deadline = Instant::now() + o.interval * 4 * steady as u32 + secs(30);
    ctx.fake.wait_hits(since, start.probes + steady, deadline, &mut monitor)?;
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
        hwm_kib: status_kib(pid, "VmHWM")?,
        rss_kib: status_kib(pid, "VmRSS")?,
        anon_kib: status_kib(pid, "RssAnon")?,
        file_kib: status_kib(pid, "RssFile")?,
        smaps: smaps(pid)?,
    };
    monitor.terminate()?;
    Ok(step)
}

/// Flips the fake to `mode` `--lead` before the next probe is due and times the mail whose
/// subject contains `word`, confirmed by `needed` probes.
fn detect(
    ctx: &Ctx<'_>,
    monitor: &mut Proc,
    mode: &str,
    word: &str,
    needed: usize,
    probe_time: Duration,
) -> Result<Detection> {
    let (o, fake) = (ctx.o, ctx.fake);
    let generous = o.interval * 4 + secs(30);
    let now = Instant::now();
    let last = fake.hits.wait(Instant::now() + generous, "the next probe", monitor, |hits| {
        hits.iter().find(|h| h.at > now).map(|h| h.at)
    })?;
    sleep_until(last + o.interval - o.lead);
    let flip = fake.switch(mode, monitor)?;
    let deadline = flip + o.interval * (needed as u32 + 3) + secs(30);
    let what = format!("the {word} email");
    let mail = ctx.sink.mails.wait(deadline, &what, monitor, |mails| {
        mails.iter().find(|m| m.at >= flip && m.subject.contains(word)).map(|m| m.at)
    })?;
    let seen = fake.hits.wait(deadline, "the confirming probes", monitor, |hits| {
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
        let args =
            monitor_args(ctx, &[ctx.fake.url(None)], o.interval, &format!("shutdown{i}"), false);
        let mut monitor = spawn_monitor(ctx, &args, &format!("shutdown{i}"))?;
        let deadline = Instant::now() + o.interval * 4 + secs(30);
        let first = ctx.fake.wait_hits(since, 1, deadline, &mut monitor)?;
        let second = ctx.fake.wait_hits(since, 2, deadline, &mut monitor)?;
        sleep_until(second + o.interval / 2);
        step.stops.push(monitor.terminate()?);
        step.first_probe.push(first - since);
    }
    Ok(step)
}

struct ScaleStep {
    targets: usize,
    probes_logged: usize,
    probes_at_fake: usize,
    /// Start lateness (ms) of ticks 1.. against `tick 0 + k × interval`, per target.
    lateness: Vec<f64>,
    /// Start lateness of tick 0 against the loop's start (the start-up burst).
    first_lateness: Vec<f64>,
    /// Probe durations (ms) as logged.
    latency: Vec<f64>,
    hwm_kib: u64,
    rss_kib: u64,
    threads: u64,
    cpu_per_probe_us: f64,
    stop: Duration,
    smaps: Vec<Mapping>,
}

fn step_scale(ctx: &Ctx<'_>) -> Result<ScaleStep> {
    let o = ctx.o;
    let urls: Vec<String> = (0..o.scale_targets).map(|i| ctx.fake.url(Some(i))).collect();
    let since = Instant::now();
    let args = monitor_args(ctx, &urls, o.scale_interval, "scale", true);
    let mut monitor = spawn_monitor(ctx, &args, "scale")?;
    let pid = monitor.pid();
    let want = o.scale_targets * o.scale_rounds;
    let deadline = Instant::now() + o.scale_interval * 3 * o.scale_rounds as u32 + secs(120);
    ctx.fake.wait_hits(since, want, deadline, &mut monitor)?;
    let cpu_ns = process_cpu_ns(pid)?;
    let probes_at_fake = ctx.fake.hits_since(since);
    let (hwm_kib, rss_kib) = (status_kib(pid, "VmHWM")?, status_kib(pid, "VmRSS")?);
    let threads = status_kib(pid, "Threads")?;
    let smaps = smaps(pid)?;
    let stop = monitor.terminate()?;
    let log = fs::read_to_string(monitor.log.clone().unwrap_or_default())
        .map_err(|e| format!("cannot read the scale log: {e}"))?;
    let schedule = Schedule::parse(&log, o.scale_interval);
    if schedule.targets < o.scale_targets || schedule.lateness.is_empty() {
        return Err(format!(
            "the scale log shows {} of {} targets and {} probes after the first: is `-v` logging \
             `watching target=` and `probe ok target=… latency_ms=`?",
            schedule.targets,
            o.scale_targets,
            schedule.lateness.len()
        ));
    }
    Ok(ScaleStep {
        targets: o.scale_targets,
        probes_logged: schedule.probes,
        probes_at_fake,
        lateness: schedule.lateness,
        first_lateness: schedule.first_lateness,
        latency: schedule.latency,
        hwm_kib,
        rss_kib,
        threads,
        cpu_per_probe_us: cpu_ns as f64 / 1000.0 / probes_at_fake.max(1) as f64,
        stop,
        smaps,
    })
}

/// Probe starts read back from the monitor's `-v` log.
struct Schedule {
    targets: usize,
    probes: usize,
    lateness: Vec<f64>,
    first_lateness: Vec<f64>,
    latency: Vec<f64>,
}

impl Schedule {
    /// A loop starts at its `watching target=` (or `resuming target=`) line; its first probe
    /// (tick 0) comes after a deliberate phase (the monitor spreads its loops over one
    /// interval), so `first_lateness` includes that phase. A probe line is logged when the
    /// probe has ended, so its start is the line's time minus `latency_ms`. Tick k is due
    /// `k × interval` after tick 0's start. Resolution: 1 ms (both numbers are whole
    /// milliseconds).
    fn parse(log: &str, interval: Duration) -> Schedule {
        let every = interval.as_millis() as i64;
        let mut loops: HashMap<&str, (i64, i64)> = HashMap::new(); // target → (tick 0, next k)
        let mut schedule = Schedule {
            targets: 0,
            probes: 0,
            lateness: vec![],
            first_lateness: vec![],
            latency: vec![],
        };
        for line in log.lines() {
            let Some(at) = line.split(' ').next().and_then(parse_log_time) else { continue };
            let Some(target) = token(line, "target=") else { continue };
            if line.contains("] watching target=") || line.contains("] resuming target=") {
                loops.insert(target, (at, 0));
            } else if line.contains("] probe ok target=") || line.contains("] probe failed target=")
            {
                let (Some(latency), Some((zero, k))) = (
                    token(line, " latency_ms=").and_then(|v| v.parse::<i64>().ok()),
                    loops.get_mut(target),
                ) else {
                    continue;
                };
                let start = at - latency;
                let late = (start - (*zero + *k * every)) as f64;
                if *k == 0 {
                    schedule.first_lateness.push(late);
                    *zero = start;
                } else {
                    schedule.lateness.push(late);
                    schedule.latency.push(latency as f64);
                }
                *k += 1;
                schedule.probes += 1;
            }
        }
        schedule.targets = loops.len();
        schedule
    }
}

// ---------------------------------------------------------------------------------------------
// The baseline child: a bare TCP connect + GET + read, nothing else.

fn baseline_child(args: &[String]) -> Result<()> {
    let [addr, interval_ms, count] = args else {
        return Err("usage: bench baseline ADDR INTERVAL_MS COUNT".into());
    };
    let interval = Duration::from_millis(interval_ms.parse().map_err(|_| "INTERVAL_MS")?);
    let count: usize = count.parse().map_err(|_| "COUNT")?;
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
        let mut stream = TcpStream::connect(addr.as_str()).map_err(|e| format!("connect: {e}"))?;
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

/// A child that is killed (SIGKILL) if dropped before it was waited for.
struct Proc {
    child: Child,
    name: String,
    log: Option<PathBuf>,
    done: bool,
}

impl Proc {
    fn new(child: Child, name: &str, log: Option<PathBuf>) -> Proc {
        Proc { child, name: name.to_owned(), log, done: false }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the child has exited.
    fn alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.done = true;
                Err(format!("{} exited early ({status}){}", self.name, self.log_tail()))
            }
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// SIGTERM, then waits: how long it took to exit. Exiting non-zero is an error.
    fn terminate(&mut self) -> Result<Duration> {
        let pid = libc::pid_t::try_from(self.pid()).map_err(|_| "pid out of range")?;
        let started = Instant::now();
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(format!("kill {pid}: {}", std::io::Error::last_os_error()));
        }
        let status = self.child.wait().map_err(|e| format!("{}: {e}", self.name))?;
        let took = started.elapsed();
        self.done = true;
        if !status.success() {
            return Err(format!(
                "{} exited with {status} after SIGTERM{}",
                self.name,
                self.log_tail()
            ));
        }
        Ok(took)
    }

    fn log_tail(&self) -> String {
        let Some(path) = &self.log else { return String::new() };
        let text = fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
        format!("; log {}:\n    {tail}", path.display())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The arguments of `api-monitor run` for `urls`: SQLite in the work dir, SMTP to mail-sink.
fn monitor_args(
    ctx: &Ctx<'_>,
    urls: &[String],
    interval: Duration,
    name: &str,
    verbose: bool,
) -> Vec<String> {
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
    if verbose {
        args.push("-v".to_owned());
    }
    args
}

/// Starts `api-monitor` with a clean environment (no API_URL, CONFIG, … from the caller's
/// shell), its log in the work dir.
fn spawn_monitor(ctx: &Ctx<'_>, args: &[String], name: &str) -> Result<Proc> {
    let log = ctx.work.join(format!("{name}.log"));
    let file = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let child = Command::new(&ctx.bins.monitor)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ctx.bins.monitor.display()))?;
    Ok(Proc::new(child, "api-monitor", Some(log)))
}

/// A list that reader threads append to and the steps wait on.
struct Events<T> {
    list: Mutex<Vec<T>>,
    changed: Condvar,
}

impl<T> Events<T> {
    fn new() -> Arc<Events<T>> {
        Arc::new(Events { list: Mutex::new(Vec::new()), changed: Condvar::new() })
    }

    fn push(&self, item: T) {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).push(item);
        self.changed.notify_all();
    }

    fn read<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        f(&self.list.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until `check` finds something, while `proc` lives, until `deadline`.
    fn wait<R>(
        &self,
        deadline: Instant,
        what: &str,
        proc: &mut Proc,
        mut check: impl FnMut(&[T]) -> Option<R>,
    ) -> Result<R> {
        let started = Instant::now();
        loop {
            {
                let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(found) = check(&list) {
                    return Ok(found);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(format!(
                        "timed out after {:.0} s waiting for {what}{}",
                        (now - started).as_secs_f64(),
                        proc.log_tail()
                    ));
                }
                let nap = (deadline - now).min(Duration::from_millis(250));
                drop(self.changed.wait_timeout(list, nap).unwrap_or_else(|p| p.into_inner()));
            }
            proc.alive()?;
        }
    }
}

/// A `GET /health` the fake API logged.
struct Hit {
    at: Instant,
    answer: String,
}

struct FakeApi {
    _proc: Proc,
    addr: String,
    hits: Arc<Events<Hit>>,
    /// `mode_change` lines: when, and the new mode.
    flips: Arc<Events<(Instant, String)>>,
}

impl FakeApi {
    fn start(bin: &Path) -> Result<FakeApi> {
        let mut child = Command::new(bin)
            .args(["--port", "0"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let (hits, flips) = (Events::new(), Events::new());
        let (h, f) = (Arc::clone(&hits), Arc::clone(&flips));
        read_lines(child.stderr.take().ok_or("fake-api stderr")?, move |at, line| {
            if line.contains(" request method=GET path=/health ") {
                h.push(Hit { at, answer: token(line, "answer=").unwrap_or_default().to_owned() });
            } else if line.contains(" mode_change ") {
                f.push((at, token(line, " to=").unwrap_or_default().to_owned()));
            }
        });
        let (tx, rx) = mpsc::channel();
        read_lines(child.stdout.take().ok_or("fake-api stdout")?, move |_, line| {
            let _ = tx.send(line.to_owned());
        });
        let proc = Proc::new(child, "fake-api", None);
        let addr = announced(&rx, "fake-api listening on http://")?;
        Ok(FakeApi { _proc: proc, addr, hits, flips })
    }

    fn url(&self, index: Option<usize>) -> String {
        match index {
            None => format!("http://{}/health", self.addr),
            Some(i) => format!("http://{}/health?i={i}", self.addr),
        }
    }

    /// Health requests logged since `since`.
    fn hits_since(&self, since: Instant) -> usize {
        self.hits.read(|hits| hits.len() - hits.partition_point(|h| h.at < since))
    }

    /// When the `n`-th health request since `since` arrived (waiting for it).
    fn wait_hits(
        &self,
        since: Instant,
        n: usize,
        deadline: Instant,
        proc: &mut Proc,
    ) -> Result<Instant> {
        let what = format!("{n} probes at the fake API");
        self.hits.wait(deadline, &what, proc, |hits| {
            let first = hits.partition_point(|h| h.at < since);
            hits.get(first + n - 1).map(|h| h.at)
        })
    }

    /// `POST /control/<mode>`; the flip's time is when fake-api logged the change.
    fn switch(&self, mode: &str, proc: &mut Proc) -> Result<Instant> {
        let posted = Instant::now();
        let mut stream = TcpStream::connect(&self.addr).map_err(|e| format!("control: {e}"))?;
        stream.set_read_timeout(Some(secs(10))).map_err(|e| e.to_string())?;
        write!(
            stream,
            "POST /control/{mode} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .map_err(|e| format!("control: {e}"))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| format!("control: {e}"))?;
        if !answer.starts_with("HTTP/1.1 200 ") {
            return Err(format!("POST /control/{mode} answered {answer:?}"));
        }
        self.flips.wait(Instant::now() + secs(10), "fake-api's mode_change line", proc, |flips| {
            flips.iter().find(|(at, to)| *at >= posted && to == mode).map(|(at, _)| *at)
        })
    }
}

/// A message mail-sink printed: when, and its subject.
struct Mail {
    at: Instant,
    subject: String,
}

struct MailSink {
    _proc: Proc,
    addr: String,
    mails: Arc<Events<Mail>>,
}

impl MailSink {
    fn start(bin: &Path) -> Result<MailSink> {
        let mut child = Command::new(bin)
            .args(["--port", "0"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mails = Events::new();
        let (m, (tx, rx)) = (Arc::clone(&mails), mpsc::channel());
        read_lines(child.stdout.take().ok_or("mail-sink stdout")?, move |at, line| {
            if let Some(subject) = line.strip_prefix("Subject: ") {
                m.push(Mail { at, subject: subject.to_owned() });
            } else if line.starts_with("mail-sink listening on ") {
                let _ = tx.send(line.to_owned());
            }
        });
        let proc = Proc::new(child, "mail-sink", None);
        let addr = announced(&rx, "mail-sink listening on smtp://")?;
        Ok(MailSink { _proc: proc, addr, mails })
    }
}

/// Reads `pipe` line by line on a thread, stamping each line when it was read.
fn read_lines(
    pipe: impl Read + Send + 'static,
    mut on_line: impl FnMut(Instant, &str) + Send + 'static,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => on_line(Instant::now(), String::from_utf8_lossy(&line).trim_end()),
            }
        }
    });
}

/// The address from a child's `… listening on scheme://ADDR` line.
fn announced(lines: &mpsc::Receiver<String>, prefix: &str) -> Result<String> {
    let line =
        lines.recv_timeout(secs(15)).map_err(|_| format!("no {prefix:?} line within 15 s"))?;
    line.strip_prefix(prefix)
        .map(str::to_owned)
        .ok_or_else(|| format!("unexpected first line {line:?}"))
}

// ---------------------------------------------------------------------------------------------
// /proc and clocks

/// The whole process's CPU time (all threads, live and exited), in ns.
fn process_cpu_ns(pid: u32) -> Result<u64> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| "pid out of range")?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t through a valid pointer.
    let rc = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    if rc != 0 {
        return Err(format!(
            "clock_getcpuclockid({pid}): {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Err(format!("clock_gettime(cpu of {pid}): {}", std::io::Error::last_os_error()));
    }
    Ok(now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}

/// (utime, stime) from /proc/PID/stat, in clock ticks.
fn process_ticks(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let after_name = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `fields[0]` is field 3.
    let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (parse(11), parse(12)) {
        (Some(utime), Some(stime)) => Ok((utime, stime)),
        _ => Err(format!("{path}: unexpected format")),
    }
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// A number from /proc/PID/status: `VmHWM`, `VmRSS` (kB) or `Threads`.
fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{path}: no {key}"))
}

/// Resident memory of one kind of mapping.
struct Mapping {
    kind: String,
    mappings: usize,
    rss_kib: u64,
    pss_kib: u64,
    private_kib: u64,
}

/// /proc/PID/smaps summed by kind of mapping, largest RSS first.
fn smaps(pid: u32) -> Result<Vec<Mapping>> {
    let path = format!("/proc/{pid}/smaps");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut kinds: BTreeMap<String, Mapping> = BTreeMap::new();
    let mut current = String::new();
    let kib = |line: &str| {
        line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    for line in text.lines() {
        let first = line.split(' ').next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let perms = fields.get(1).copied().unwrap_or_default();
            let name = fields.get(5..).map(|f| f.join(" ")).unwrap_or_default();
            let (start, end) = first.split_once('-').unwrap_or_default();
            let hex = |h: &str| u64::from_str_radix(h, 16).unwrap_or(0);
            let size_kib = hex(end).saturating_sub(hex(start)) / 1024;
            current = mapping_kind(&name, perms, size_kib);
            kinds
                .entry(current.clone())
                .or_insert_with(|| Mapping {
                    kind: current.clone(),
                    mappings: 0,
                    rss_kib: 0,
                    pss_kib: 0,
                    private_kib: 0,
                })
                .mappings += 1;
        } else if line.starts_with("Rss:") {
            if let Some(m) = kinds.get_mut(&current) {
                m.rss_kib += kib(line);
            }
        } else if line.starts_with("Pss:") {
            if let Some(m) = kinds.get_mut(&current) {
                m.pss_kib += kib(line);
            }
        } else if line.starts_with("Private_Clean:") || line.starts_with("Private_Dirty:") {
            if let Some(m) = kinds.get_mut(&current) {
                m.private_kib += kib(line);
            }
        }
    }
    let mut list: Vec<Mapping> = kinds.into_values().filter(|m| m.rss_kib > 0).collect();
    list.sort_by_key(|m| std::cmp::Reverse(m.rss_kib));
    Ok(list)
}

/// What a mapping is; anonymous ones are told apart by size only, so the labels say "e.g.".
fn mapping_kind(name: &str, perms: &str, size_kib: u64) -> String {
    let name = name.trim_end_matches(" (deleted)");
    let file = name.rsplit('/').next().unwrap_or(name);
    match name {
        "" if perms.starts_with("---") => "anonymous, no access (guard pages, reserved)".into(),
        "" if size_kib <= 256 => {
            "anonymous ≤ 256 KiB (e.g. the 256 KiB probe-thread stacks, signal stacks)".into()
        }
        "" if (2040..=2056).contains(&size_kib) => {
            "anonymous 2 MiB (e.g. default thread stacks, kept in glibc's stack cache)".into()
        }
        "" => "anonymous, other sizes (e.g. glibc malloc arena heaps, large allocations)".into(),
        "[heap]" => "[heap] (brk)".into(),
        "[stack]" => "[stack] (main thread)".into(),
        "[vdso]" | "[vvar]" | "[vsyscall]" | "[vvar_vclock]" => "kernel ([vdso], [vvar])".into(),
        _ if file.contains(".so") => format!("shared library {file}"),
        _ if file == "api-monitor" && perms.contains('x') => "api-monitor binary: code".into(),
        _ if file == "api-monitor" => {
            "api-monitor binary: read-only data, relocations, .data".into()
        }
        _ => format!("mapped file {file}"),
    }
}

fn read_loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The machine and the build, at the start.
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
            load: read_loadavg(),
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
fn token<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    text[start..].split_whitespace().next()
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-25T14:42:00.120Z` → ms since the epoch.
fn parse_log_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[10] != b'T' || b[23] != b'Z' {
        return None;
    }
    let n = |from: usize, to: usize| text.get(from..to)?.parse::<i64>().ok();
    let days = days_from_civil(n(0, 4)?, n(5, 7)?, n(8, 10)?);
    Some(((days * 24 + n(11, 13)?) * 60 + n(14, 16)?) * 60_000 + n(17, 19)? * 1000 + n(20, 23)?)
}

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
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

// ---------------------------------------------------------------------------------------------
// The report

struct Results<'a> {
    o: &'a Options,
    machine: &'a Machine,
    cpu: CpuStep,
    baseline: BaselineStep,
    latency: LatencyStep,
    shutdown: ShutdownStep,
    scale: ScaleStep,
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
    let cpu = &r.cpu.window;
    let base = &r.baseline.window;
    let lat = &r.latency;
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
    let _ = writeln!(
        w,
        "- sizes: {} probes at {} in {} slices; {} outage/recovery cycles at {} (failures {}, successes {}, flip {} before a probe is due); \
         {} shutdowns; {} targets at {} for {} rounds",
        o.probes,
        flag_duration(o.fast_interval),
        o.slices,
        o.cycles,
        flag_duration(o.interval),
        o.failures,
        o.successes,
        flag_duration(o.lead),
        o.shutdowns,
        o.scale_targets,
        flag_duration(o.scale_interval),
        o.scale_rounds
    );
    let _ = writeln!(w, "- command: `make bench` (`bench --help` for the knobs); everything on 127.0.0.1 (fake-api, mail-sink, SQLite in a temp dir)\n");

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
        ms(r.baseline.probe_wall),
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
        ms(r.baseline.probe_wall),
        ms(r.baseline.wall_min),
        ms(r.baseline.wall_max),
        ms(r.cpu.stop)
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
        "\nFlip = fake-api's `mode_change` log line; mail = mail-sink printing the message; both stamped by the bench as it \
         reads the children's output (same monotonic clock). Confirming probe = request number {} (outage) or {} (recovery) that saw the new mode, \
         as logged by fake-api; from there: the response, detector, SQLite insert, email composition, courier wake-up, SMTP.\n",
        o.failures, o.successes
    );

    let stops = spread(&r.shutdown.stops.iter().map(|&d| ms(d)).collect::<Vec<_>>());
    let first = spread(&r.shutdown.first_probe.iter().map(|&d| ms(d)).collect::<Vec<_>>());
    let _ = writeln!(w, "## Shutdown\n");
    let _ = writeln!(w, "| | runs | min | median | max |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    let _ = writeln!(w, "| SIGTERM while idle (half an interval after a probe) → process exited | {} | {:.1} ms | {:.1} ms | {:.1} ms |", r.shutdown.stops.len(), stops.min, stops.median, stops.max);
    let _ = writeln!(w, "| start → first probe at the fake API (start-up) | {} | {:.1} ms | {:.1} ms | {:.1} ms |\n", r.shutdown.first_probe.len(), first.min, first.median, first.max);

    let sc = &r.scale;
    let _ =
        writeln!(w, "## Scale: {} targets every {}\n", sc.targets, flag_duration(o.scale_interval));
    let late_over = sc.lateness.iter().filter(|&&l| l > 100.0).count();
    let _ = writeln!(w, "| | p50 | p99 | max |");
    let _ = writeln!(w, "|---|---|---|---|");
    let _ = writeln!(
        w,
        "| probe start lateness, ticks ≥ 1 ({} probes) | {:.0} ms | {:.0} ms | {:.0} ms |",
        sc.lateness.len(),
        percentile(&sc.lateness, 50.0),
        percentile(&sc.lateness, 99.0),
        percentile(&sc.lateness, 100.0)
    );
    let _ = writeln!(
        w,
        "| first probe after its loop started (tick 0, includes the start phase) | {:.0} ms | {:.0} ms | {:.0} ms |",
        percentile(&sc.first_lateness, 50.0),
        percentile(&sc.first_lateness, 99.0),
        percentile(&sc.first_lateness, 100.0)
    );
    let _ = writeln!(
        w,
        "| probe duration, ticks ≥ 1 (`latency_ms`) | {:.0} ms | {:.0} ms | {:.0} ms |",
        percentile(&sc.latency, 50.0),
        percentile(&sc.latency, 99.0),
        percentile(&sc.latency, 100.0)
    );
    let _ = writeln!(
        w,
        "\n- probes: {} logged by the monitor, {} requests at the fake API; {} of the ticks ≥ 1 started more than 100 ms late",
        sc.probes_logged, sc.probes_at_fake, late_over
    );
    let _ = writeln!(
        w,
        "- memory: peak RSS {}, RSS at the end {}, {} threads; CPU {:.0} µs per probe over the whole run (start-up and `-v` logging included)",
        mib(sc.hwm_kib),
        mib(sc.rss_kib),
        sc.threads,
        sc.cpu_per_probe_us
    );
    let _ = writeln!(w, "- SIGTERM → exit with {} loops: {:.1} ms", sc.targets, ms(sc.stop));
    let _ = writeln!(
        w,
        "- lateness = probe start (log time − `latency_ms`) − (tick 0's start + k × interval); 1 ms resolution, \
         so ±1 ms is noise. The monitor spreads its loops' first probes over one interval (no burst), so \
         \"first probe after its loop started\" includes that deliberate phase.\n"
    );
    let _ = writeln!(w, "RSS by mapping at the end of the scale run:\n");
    smaps_table(w, &sc.smaps);
    s
}

fn smaps_table(w: &mut String, list: &[Mapping]) {
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
    fn log_times_parse_to_epoch_milliseconds() {
        assert_eq!(parse_log_time("1970-01-01T00:00:01.002Z"), Some(1002));
        assert_eq!(parse_log_time("2000-03-01T00:00:00.000Z"), Some(951_868_800_000));
        assert_eq!(parse_log_time("not a time"), None);
    }

    #[test]
    fn schedule_measures_lateness_against_tick_zero() {
        let log = "\
2026-11-25T14:00:00.000Z [INFO] watching target=http://h/health?i=1 region=direct (no history yet)
2026-11-25T14:00:00.003Z [DEBUG] probe ok target=http://h/health?i=1 region=direct latency_ms=1
2026-11-25T14:00:05.010Z [DEBUG] probe ok target=http://h/health?i=1 region=direct latency_ms=2
2026-11-25T14:00:10.004Z [WARN] probe failed target=http://h/health?i=1 reason=\"HTTP 503\" latency_ms=1 streak=1
";
        let s = Schedule::parse(log, Duration::from_secs(5));
        assert_eq!((s.targets, s.probes), (1, 3));
        assert_eq!(s.first_lateness, vec![2.0], "tick 0 after the loop's start");
        assert_eq!(s.lateness, vec![6.0, 1.0], "later ticks against tick 0's start");
    }

    #[test]
    fn options_take_flags_over_variables_over_defaults() {
        let args: Vec<String> =
            ["--smoke", "--probes", "7", "--lead=20ms"].map(String::from).to_vec();
        let env = |k: &str| (k == "BENCH_PROBES" || k == "BENCH_CYCLES").then(|| "3".to_owned());
        let o = Options::parse(&args, env).expect("parses").expect("not help");
        assert!(o.smoke);
        assert_eq!((o.probes, o.cycles, o.scale_targets), (7, 3, 10));
        assert_eq!(o.lead, Duration::from_millis(20));
        assert!(Options::parse(&["--nope".into(), "1".into()], |_| None).is_err());
    }

    #[test]
    fn percentiles_and_spreads() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        let s = spread(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 10.0));
    }
}
