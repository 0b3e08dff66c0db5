//! The command line: flags (lexopt) over `BENCH_*` variables over defaults, durations spelled
//! as humantime does (`50ms`, `1s`, `2m`, `1m30s`). Parsing is pure: the arguments and the
//! environment come in as values, so every rule is unit-tested.

use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const HELP: &str = "\
bench: benchmark api-monitor on loopback against the targets of issue 6

Usage: bench [--smoke] [--keep] [--out FILE] [--bin-dir DIR] [--image-bin FILE] [--steps LIST]
             [SIZES]

  --smoke               tiny sizes, every step still runs (seconds, for make bench-smoke)
  --keep                keep the work dir (monitor logs, SQLite databases) afterwards
  --out FILE            also write the report to FILE (it is always printed on stdout)
  --bin-dir DIR         where api-monitor and fake-api are (default: this binary's directory)
  --image-bin FILE      the image's api-monitor (static musl, `make static`), measured beside
                        the other in the latency and monit steps (default: none; `make
                        bench` builds and passes it when the musl target is installed)
  --steps LIST          comma-separated steps to run, in this order (default: all):
                        cpu, baseline, latency, shutdown, scale, holes, monit, cluster
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
  --scale-targets N     targets of the scale and holes steps (10000 / 50)
  --scale-interval DUR  their interval (5s / 1s)
  --scale-rounds N      rounds of probes measured in those steps (6 / 3)
  --scale-timeout DUR   the monitor's --timeout in those steps (5s / 1s)
  --holes N             how many of the holes step's targets never answer (1000 / 5)
  --monit-targets N     hosts of the monit step, for monit and for api-monitor (1000 / 20)
  --monit-interval DUR  their interval; monit's cycle is whole seconds (5s / 1s)
  --monit-rounds N      rounds of probes measured in the monit step (10 / 3)
  --monit-bin PATH      the monit to run (default: `monit` on PATH, /usr/bin, /usr/sbin);
                        when it is missing the step measures api-monitor alone and says so
  --cluster-leases LIST leases of the cluster step's failover runs (3s,15s / 3s)
  --cluster-failovers N leader kills per lease (3 / 1)
  --cluster-window DUR  steady window in which each member's queries are counted (30s / 5s)
  --cluster-targets N   targets shared by the 3 members of the balance run (3000 / 30)
  --cluster-interval DUR  their interval (5s / 1s)
  --cluster-rounds N    rounds of probes counted in the balance run (4 / 3)
  --mysql-url URL       the MySQL/MariaDB server of the cluster step; its user creates and
                        drops a scratch database (default: $TEST_MYSQL_URL, else
                        mysql://root@127.0.0.1:3306/test). Unreachable: the step is skipped
                        and says so, unless REQUIRE_MYSQL=1, where the run fails
DUR is e.g. 50ms, 1s, 2m, 1m30s. Exit 0 when every measurement was taken, 1 when a step failed,
2 on a bad command line. `bench baseline ADDR INTERVAL_MS COUNT` is the baseline child
(internal).
";

/// The steps, in the order they run.
pub const STEPS: &[&str] =
    &["cpu", "baseline", "latency", "shutdown", "scale", "holes", "monit", "cluster"];

/// The MySQL server when neither `--mysql-url` nor `TEST_MYSQL_URL` names one.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Options>),
    Help,
    /// The baseline child: a bare exchange with `addr` every `interval`, `count` times.
    Baseline {
        addr: String,
        interval: Duration,
        count: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub smoke: bool,
    /// Keep the work dir (logs, databases) after a successful run too.
    pub keep: bool,
    pub out: Option<PathBuf>,
    pub bin_dir: PathBuf,
    /// The image's static binary, measured beside `bin_dir`'s in the latency and monit steps.
    pub image_bin: Option<PathBuf>,
    pub steps: Vec<&'static str>,
    pub probes: usize,
    pub fast_interval: Duration,
    pub slices: usize,
    pub cycles: usize,
    pub steady_probes: usize,
    pub interval: Duration,
    pub failures: usize,
    pub successes: usize,
    pub lead: Duration,
    pub shutdowns: usize,
    pub scale_targets: usize,
    pub scale_interval: Duration,
    pub scale_rounds: usize,
    pub scale_timeout: Duration,
    pub holes: usize,
    pub monit_targets: usize,
    pub monit_interval: Duration,
    pub monit_rounds: usize,
    pub monit_bin: Option<PathBuf>,
    /// One failover run per lease.
    pub cluster_leases: Vec<Duration>,
    pub cluster_failovers: usize,
    pub cluster_window: Duration,
    pub cluster_targets: usize,
    pub cluster_interval: Duration,
    pub cluster_rounds: usize,
    pub mysql_url: String,
    /// `REQUIRE_MYSQL=1`: an unreachable MySQL fails the cluster step instead of skipping it.
    pub require_mysql: bool,
}

/// The options that take a value, as flags (`--name`) and variables (`BENCH_NAME`).
const KNOBS: &[&str] = &[
    "out",
    "bin-dir",
    "image-bin",
    "steps",
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
    "scale-timeout",
    "holes",
    "monit-targets",
    "monit-interval",
    "monit-rounds",
    "monit-bin",
    "cluster-leases",
    "cluster-failovers",
    "cluster-window",
    "cluster-targets",
    "cluster-interval",
    "cluster-rounds",
    "mysql-url",
];

impl Options {
    pub fn defaults(smoke: bool, bin_dir: &Path) -> Options {
        let pick = |full: usize, tiny: usize| if smoke { tiny } else { full };
        let secs = |full: u64, tiny: u64| Duration::from_secs(if smoke { tiny } else { full });
        Options {
            smoke,
            keep: false,
            out: None,
            bin_dir: bin_dir.to_path_buf(),
            image_bin: None,
            steps: STEPS.to_vec(),
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
            scale_targets: pick(10_000, 50),
            scale_interval: secs(5, 1),
            scale_rounds: pick(6, 3),
            scale_timeout: secs(5, 1),
            holes: pick(1000, 5),
            monit_targets: pick(1000, 20),
            monit_interval: secs(5, 1),
            monit_rounds: pick(10, 3),
            monit_bin: None,
            cluster_leases: [3, 15].into_iter().take(pick(2, 1)).map(Duration::from_secs).collect(),
            cluster_failovers: pick(3, 1),
            cluster_window: secs(30, 5),
            cluster_targets: pick(3000, 30),
            cluster_interval: secs(5, 1),
            cluster_rounds: pick(4, 3),
            mysql_url: DEFAULT_MYSQL_URL.to_owned(),
            require_mysql: false,
        }
    }

    pub fn runs(&self, step: &str) -> bool {
        self.steps.contains(&step)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let count = || -> Result<usize, String> {
            match value.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{value:?} is not a positive whole number")),
            }
        };
        let duration = || -> Result<Duration, String> {
            match humantime::parse_duration(value) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err("must be longer than 0".into()),
                Err(e) => Err(format!("{value:?}: {e} (e.g. 50ms, 1s, 2m)")),
            }
        };
        match name {
            "out" => self.out = Some(PathBuf::from(value)),
            "bin-dir" => self.bin_dir = PathBuf::from(value),
            "image-bin" => self.image_bin = Some(PathBuf::from(value)),
            "steps" => self.steps = parse_steps(value)?,
            "probes" => self.probes = count()?,
            "fast-interval" => self.fast_interval = duration()?,
            "slices" => self.slices = count()?,
            "cycles" => self.cycles = count()?,
            "steady-probes" => self.steady_probes = count()?,
            "interval" => self.interval = duration()?,
            "failures" => self.failures = count()?,
            "successes" => self.successes = count()?,
            "lead" => self.lead = duration()?,
            "shutdowns" => self.shutdowns = count()?,
            "scale-targets" => self.scale_targets = count()?,
            "scale-interval" => self.scale_interval = duration()?,
            "scale-rounds" => self.scale_rounds = count()?,
            "scale-timeout" => self.scale_timeout = duration()?,
            "holes" => {
                self.holes =
                    value.parse().map_err(|_| format!("{value:?} is not a whole number"))?
            }
            "monit-targets" => self.monit_targets = count()?,
            "monit-interval" => self.monit_interval = duration()?,
            "monit-rounds" => self.monit_rounds = count()?,
            "monit-bin" => self.monit_bin = Some(PathBuf::from(value)),
            "cluster-leases" => self.cluster_leases = parse_leases(value)?,
            "cluster-failovers" => self.cluster_failovers = count()?,
            "cluster-window" => self.cluster_window = duration()?,
            "cluster-targets" => self.cluster_targets = count()?,
            "cluster-interval" => self.cluster_interval = duration()?,
            "cluster-rounds" => self.cluster_rounds = count()?,
            "mysql-url" => self.mysql_url = value.to_owned(),
            _ => return Err(format!("unknown option {name}")),
        }
        Ok(())
    }
}

/// `3s,15s` → the leases of the failover runs, each at least the monitor's 3 s minimum.
fn parse_leases(list: &str) -> Result<Vec<Duration>, String> {
    let mut leases = Vec::new();
    for word in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let lease =
            humantime::parse_duration(word).map_err(|e| format!("{word:?}: {e} (e.g. 3s, 15s)"))?;
        if lease < Duration::from_secs(3) {
            return Err(format!("{word:?}: api-monitor's shortest lease is 3s"));
        }
        leases.push(lease);
    }
    if leases.is_empty() {
        return Err("no lease named".into());
    }
    Ok(leases)
}

/// `cpu,scale` → the known steps in the order they run.
fn parse_steps(list: &str) -> Result<Vec<&'static str>, String> {
    let wanted: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if let Some(bad) = wanted.iter().find(|w| !STEPS.contains(w)) {
        return Err(format!("unknown step {bad:?}; the steps are {}", STEPS.join(", ")));
    }
    if wanted.is_empty() {
        return Err("no step named".into());
    }
    Ok(STEPS.iter().copied().filter(|s| wanted.contains(s)).collect())
}

/// Parses the command line (without the program name) and the environment (`env`). Flags win
/// over `BENCH_*` variables, which win over the defaults (full, or `--smoke` sizes).
pub fn parse_from(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
    bin_dir: &Path,
) -> Result<Command, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut flags: Vec<(String, String)> = Vec::new();
    let (mut smoke, mut keep) = (false, false);
    let fail = |e: lexopt::Error| e.to_string();
    while let Some(arg) = parser.next().map_err(fail)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("smoke") => smoke = true,
            Long("keep") => keep = true,
            Long(name) if KNOBS.contains(&name) => {
                let name = name.to_owned();
                let value = parser.value().map_err(fail)?.string().map_err(fail)?;
                flags.push((name, value));
            }
            Value(word) if word == "baseline" && flags.is_empty() && !smoke && !keep => {
                return parse_baseline(&mut parser);
            }
            _ => return Err(fail(arg.unexpected())),
        }
    }
    let truthy = |v: Option<String>| v.is_some_and(|v| !v.is_empty() && v != "0");
    let mut options = Options::defaults(smoke || truthy(env("BENCH_SMOKE")), bin_dir);
    options.keep = keep || truthy(env("BENCH_KEEP"));
    options.require_mysql = env("REQUIRE_MYSQL").as_deref() == Some("1");
    if let Some(url) = env("TEST_MYSQL_URL").filter(|u| !u.is_empty()) {
        options.mysql_url = url;
    }
    for knob in KNOBS {
        let var = format!("BENCH_{}", knob.to_uppercase().replace('-', "_"));
        if let Some(value) = env(&var) {
            options.set(knob, &value).map_err(|e| format!("{var}: {e}"))?;
        }
    }
    for (name, value) in &flags {
        options.set(name, value).map_err(|e| format!("--{name}: {e}"))?;
    }
    if options.lead >= options.interval {
        return Err("--lead must be shorter than --interval".into());
    }
    if options.holes >= options.scale_targets {
        return Err("--holes must be fewer than --scale-targets (some targets must answer)".into());
    }
    if options.monit_interval.subsec_nanos() != 0 {
        return Err("--monit-interval must be whole seconds (monit's `set daemon` cycle)".into());
    }
    Ok(Command::Run(Box::new(options)))
}

fn parse_baseline(parser: &mut lexopt::Parser) -> Result<Command, String> {
    const USAGE: &str = "usage: bench baseline ADDR INTERVAL_MS COUNT";
    let mut words = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Value(v) => words.push(v.string().map_err(|e| e.to_string())?),
            _ => return Err(USAGE.into()),
        }
    }
    let [addr, interval_ms, count] = <[String; 3]>::try_from(words).map_err(|_| USAGE)?;
    Ok(Command::Baseline {
        addr,
        interval: Duration::from_millis(interval_ms.parse().map_err(|_| USAGE)?),
        count: count.parse().map_err(|_| USAGE)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_from(
            args.iter().map(OsString::from),
            |k| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone()),
            Path::new("/bin"),
        )
    }

    fn options(args: &[&str], env: &[(&str, &str)]) -> Options {
        match parse(args, env) {
            Ok(Command::Run(o)) => *o,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn flags_win_over_variables_over_defaults() {
        let o = options(
            &["--smoke", "--probes", "7", "--lead=20ms"],
            &[("BENCH_PROBES", "3"), ("BENCH_CYCLES", "3")],
        );
        assert!(o.smoke);
        assert_eq!((o.probes, o.cycles, o.scale_targets), (7, 3, 50), "flag, variable, smoke");
        assert_eq!(o.lead, Duration::from_millis(20));
    }

    #[test]
    fn smoke_and_keep_come_from_variables_too() {
        let o = options(&[], &[("BENCH_SMOKE", "1"), ("BENCH_KEEP", "yes")]);
        assert!(o.smoke && o.keep);
        let o = options(&[], &[("BENCH_SMOKE", "0")]);
        assert!(!o.smoke, "0 means off");
        assert_eq!(o.scale_targets, 10_000, "full sizes");
    }

    #[test]
    fn durations_are_humantime() {
        let o = options(&["--scale-interval", "1m30s", "--fast-interval", "250ms"], &[]);
        assert_eq!(o.scale_interval, Duration::from_secs(90));
        assert_eq!(o.fast_interval, Duration::from_millis(250));
        assert!(parse(&["--interval", "5 parsecs"], &[]).is_err());
        assert!(parse(&["--interval", "0s"], &[]).is_err(), "zero is refused");
    }

    #[test]
    fn steps_keep_their_order_and_unknown_ones_are_named() {
        let o = options(&["--steps", "scale,cpu"], &[]);
        assert_eq!(o.steps, ["cpu", "scale"]);
        let e = parse(&["--steps", "cpu,nope"], &[]).unwrap_err();
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert!(parse(&["--nope", "1"], &[]).is_err(), "unknown flag");
        assert!(parse(&["--probes"], &[]).is_err(), "missing value");
        assert!(parse(&["--probes", "0"], &[]).is_err(), "zero probes");
        assert!(parse(&["--lead", "2s"], &[]).is_err(), "lead over the interval");
        assert!(parse(&["--monit-interval", "1500ms"], &[]).is_err(), "monit has whole seconds");
        assert!(parse(&["--holes", "10000"], &[]).is_err(), "every target a hole");
        assert!(parse(&[], &[("BENCH_PROBES", "x")]).unwrap_err().starts_with("BENCH_PROBES"));
        assert_eq!(parse(&["--help"], &[]), Ok(Command::Help));
    }

    #[test]
    fn the_cluster_step_reads_the_test_suites_mysql_variables() {
        let o = options(&["--smoke"], &[]);
        assert_eq!(o.mysql_url, DEFAULT_MYSQL_URL);
        assert!(!o.require_mysql);
        assert_eq!(o.cluster_leases, [Duration::from_secs(3)], "smoke: the short lease only");
        let o = options(
            &["--cluster-leases", "3s, 1m"],
            &[("TEST_MYSQL_URL", "mysql://u@db:3307/x"), ("REQUIRE_MYSQL", "1")],
        );
        assert_eq!(o.mysql_url, "mysql://u@db:3307/x");
        assert!(o.require_mysql);
        assert_eq!(o.cluster_leases, [Duration::from_secs(3), Duration::from_secs(60)]);
        let o = options(&["--mysql-url", "mysql://a@b/c"], &[("TEST_MYSQL_URL", "mysql://x@y/z")]);
        assert_eq!(o.mysql_url, "mysql://a@b/c", "the flag wins");
        assert!(parse(&["--cluster-leases", "1s"], &[]).is_err(), "under the 3 s minimum");
        assert!(parse(&["--cluster-leases", ""], &[]).is_err(), "no lease");
    }

    #[test]
    fn the_baseline_child_has_three_positionals() {
        assert_eq!(
            parse(&["baseline", "127.0.0.1:1", "50", "9"], &[]),
            Ok(Command::Baseline {
                addr: "127.0.0.1:1".into(),
                interval: Duration::from_millis(50),
                count: 9
            })
        );
        assert!(parse(&["baseline", "127.0.0.1:1"], &[]).is_err());
    }
}
