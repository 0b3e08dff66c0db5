//! The `api-monitor` binary: parse → configure → build the adapters → run.
//!
//! This is the one place that prints a fatal error and picks the exit code: 0 for a clean stop
//! (or a healthy `check`), 1 for an unhealthy `check` or a runtime failure, 2 for a bad command
//! line or configuration — always one line naming the option.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_monitor::cli::{self, Command, Parsed};
use api_monitor::cluster::MemberId;
use api_monitor::config::{self, Config, Delivery, ReportOptions, Surroundings};
use api_monitor::notify::mailer::{LogMailer, Mailer, SmtpMailer, SMTP_TIMEOUT};
use api_monitor::probe::{speed_verdict, HttpProber, Outcome, Prober};
use api_monitor::runtime::coordinator::Identity;
use api_monitor::runtime::ledger::Ledger;
use api_monitor::runtime::schedule::Shutdown;
use api_monitor::runtime::state::{self, Ending, Recipients, Snapshot};
use api_monitor::runtime::{self, probing, ClusterParts, Parts};
use api_monitor::store::Access;
use api_monitor::timestamp::{Clock, SystemClock};
use api_monitor::web::metrics::Registry;
use api_monitor::web::self_check::{self, Health};
use api_monitor::web::server::{self, Sources};
use api_monitor::web::status_page;
use api_monitor::{duration, redact, report, store};

/// Why the program stops early.
enum Fatal {
    /// Bad command line or configuration: exit 2.
    Usage(String),
    /// The world refused (database, log file, threads): exit 1.
    Runtime(String),
}

fn main() -> ExitCode {
    // Before anything speaks TLS: the MySQL driver takes rustls's process default.
    api_monitor::crypto::install();
    match run() {
        Ok(code) => code,
        Err(Fatal::Usage(message)) => {
            eprintln!("api-monitor: {message} (see --help)");
            ExitCode::from(2)
        }
        Err(Fatal::Runtime(message)) => {
            eprintln!("api-monitor: {message}");
            ExitCode::from(1)
        }
    }
}

/// The real environment, for the configuration step.
struct Os;

impl Surroundings for Os {
    fn host_name(&self) -> String {
        hostname_or_localhost()
    }
    fn read_secret(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

fn hostname_or_localhost() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn run() -> Result<ExitCode, Fatal> {
    // A value that is not UTF-8 must be refused by name, not taken as unset (which would fall
    // back to a default, e.g. someone else's API).
    let not_text = std::cell::RefCell::new(Vec::new());
    let env = |name: &str| match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            not_text.borrow_mut().push(name.to_owned());
            None
        }
    };
    let parsed = cli::parse_from(std::env::args_os().skip(1), &env);
    if let Some(name) = not_text.borrow().first() {
        return Err(Fatal::Usage(format!("{name}: not valid UTF-8 text")));
    }
    let args = match parsed {
        Ok(Parsed::Help) => {
            print!("{}", cli::HELP);
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Parsed::Version) => {
            println!("api-monitor {}", env!("CARGO_PKG_VERSION"));
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Parsed::Go(args)) => *args,
        Err(e) => return Err(Fatal::Usage(e.to_string())),
    };
    let requeue = args.requeue;
    let silence_action = match args.command {
        Command::Silence => Some(args.silence_action().map_err(|e| Fatal::Usage(e.to_string()))?),
        _ => None,
    };
    let reload_args = args.clone();
    let config = config::from_args(args, &Os).map_err(|e| Fatal::Usage(e.to_string()))?;
    init_logging(&config)?;
    match config.command {
        Command::Check => Ok(check(&config)),
        Command::Healthz => healthz(&config),
        Command::Report => report(&config),
        Command::Outbox => outbox(&config, requeue),
        Command::Silence => silence(&config, silence_action.unwrap_or(cli::SilenceAction::List)),
        Command::Run => watch(config, reload_args).map(|()| ExitCode::SUCCESS),
    }
}

/// `api-monitor check`: probe each target once and report on stdout.
fn check(config: &Config) -> ExitCode {
    let mut healthy = true;
    for target in &config.targets {
        let prober = HttpProber::new(target.timeout);
        for region in config.regions.iter().filter(|r| target.regions.contains(&r.name)) {
            let proxy = region.proxy_address();
            let outcome = speed_verdict(prober.probe(&target.url, proxy.as_deref()), target.slow);
            let ms = outcome.latency().as_millis();
            let (name, from) = (&target.name, &region.name);
            match outcome {
                Outcome::Healthy { .. } => println!("OK     {name} from {from} ({ms} ms)"),
                Outcome::Failed { reason, .. } => {
                    healthy = false;
                    println!("FAIL   {name} from {from} — {reason} ({ms} ms)")
                }
                Outcome::Blind { reason, .. } => {
                    healthy = false;
                    println!("BLIND  {name} from {from} — {reason} ({ms} ms)")
                }
            }
        }
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `api-monitor check --healthz`: this machine's monitor's own `/healthz`, one line on stdout.
fn healthz(config: &Config) -> Result<ExitCode, Fatal> {
    let listen = config.listen.ok_or_else(|| {
        Fatal::Usage(
            "--healthz: no address to ask: set --listen, LISTEN or the config file's `listen` to \
             the running monitor's"
                .into(),
        )
    })?;
    let url = self_check::healthz_url(listen);
    Ok(match self_check::ask(&url, config.timeout) {
        Health::Well(line) => {
            println!("OK     {url}: {line}");
            ExitCode::SUCCESS
        }
        Health::Unwell(why) => {
            println!("FAIL   {url}: {why}");
            ExitCode::from(1)
        }
    })
}

/// `api-monitor report`: uptime per target/region from the database, as a table or JSON.
fn report(config: &Config) -> Result<ExitCode, Fatal> {
    let options = config.report.clone().unwrap_or(ReportOptions {
        since: config::DEFAULT_REPORT_SPAN,
        target: None,
        json: false,
    });
    let mut store = open_store(config, Access::ReadOnly)?;
    let now = SystemClock.now();
    let from = now.minus(options.since);
    let reports = report::load(store.as_mut(), options.target.as_deref(), from, now)
        .map_err(|e| Fatal::Runtime(e.to_string()))?;
    if let (Some(target), true) = (&options.target, reports.is_empty()) {
        return Err(Fatal::Runtime(format!(
            "--target: no recorded state for {} in {}",
            redact::url(target),
            redact::url(&config.db_url)
        )));
    }
    if options.json {
        print!("{}", report::json(&reports, from, now));
    } else {
        print!("{}", report::table(&reports, from, now));
        if let (Some(cluster), Some(members)) = (&config.cluster, store.as_cluster()) {
            let (rows, leader) =
                members.view(&cluster.name).map_err(|e| Fatal::Runtime(e.to_string()))?;
            print!(
                "{}",
                report::members::table(&cluster.name, &rows, leader.as_ref(), cluster.lease)
            );
        }
        let dead = store.dead().map_err(|e| Fatal::Runtime(e.to_string()))?;
        if !dead.is_empty() {
            println!(
                "\n{} notification(s) were refused for good by the mail server: see `api-monitor \
                 outbox`",
                dead.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the database for a one-shot command: `report` and the `outbox` listing read only
/// (nothing created or upgraded) and say on stderr which database they read, since a relative
/// SQLite path depends on where one stands. Every failure is fatal: a permanent one (wrong
/// password, unknown database…) is the user's to fix (exit 2); a database that is not there
/// yet, or not upgraded yet, is said in one line (exit 1).
fn open_store(config: &Config, access: Access) -> Result<Box<dyn store::Store>, Fatal> {
    if access == Access::ReadOnly {
        eprintln!("reading {}", store::location(&config.db_url));
    }
    store::open_with(&config.db_url, access).map_err(|e| match e {
        store::StoreError::NoDatabase { .. } | store::StoreError::OldSchema { .. } => {
            Fatal::Runtime(e.to_string())
        }
        e if e.is_permanent() => Fatal::Usage(format!("--db: {e}")),
        e => Fatal::Runtime(format!("--db: {e}")),
    })
}

/// `api-monitor outbox`: the notifications not yet delivered and the dead ones; with
/// `--requeue`, dead ones become pending again (a running monitor picks them up within a
/// minute, or the next start does).
fn outbox(config: &Config, requeue: Option<cli::Requeue>) -> Result<ExitCode, Fatal> {
    // Read-only first, so a mistyped --db is an error rather than a new empty database;
    // `--requeue` then reopens it for writing.
    let mut store = open_store(config, Access::ReadOnly)?;
    if requeue.is_some() {
        store = open_store(config, Access::ReadWrite)?;
    }
    let failed = |e: store::StoreError| Fatal::Runtime(e.to_string());
    if let Some(which) = requeue {
        let id = match which {
            cli::Requeue::All => None,
            cli::Requeue::One(id) => Some(id),
        };
        let n = store.requeue(id).map_err(failed)?;
        if n == 0 {
            let what = id.map_or_else(
                || "no dead notification".to_string(),
                |id| format!("--requeue: no dead notification has id {id}"),
            );
            return Err(Fatal::Runtime(what));
        }
        println!("re-queued {n} notification(s): a running monitor sends them within a minute");
        return Ok(ExitCode::SUCCESS);
    }
    let pending = store.pending().map_err(failed)?;
    let dead = store.dead().map_err(failed)?;
    print!("{}", report::outbox(&pending, &dead));
    Ok(ExitCode::SUCCESS)
}

/// The longest silence `api-monitor silence --for` sets: longer is a typo, or a target that
/// should be removed from the configuration instead.
const MAX_SILENCE: Duration = Duration::from_secs(90 * 24 * 3600);

/// `api-monitor silence`: set a silence (written to the database, so every instance honours
/// it, a restarted one too), list those not ended, or end some early.
fn silence(config: &Config, action: cli::SilenceAction) -> Result<ExitCode, Fatal> {
    use api_monitor::maintenance::{Silence, ALL_TARGETS};
    let failed = |e: store::StoreError| Fatal::Runtime(e.to_string());
    let now = SystemClock.now();
    let target_name = |raw: &str, flag: &str| -> Result<String, Fatal> {
        if raw == "all" {
            return Ok(ALL_TARGETS.to_owned());
        }
        match url::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(redact::url(raw)),
            _ => Err(Fatal::Usage(format!(
                "{flag}: expected a target's URL (http:// or https://, as configured) or `all`, \
                 got {:?}",
                redact::url(raw)
            ))),
        }
    };
    match action {
        cli::SilenceAction::Add { target, length, reason } => {
            let target = target_name(&target, "--target")?;
            let length =
                duration::parse(&length).map_err(|e| Fatal::Usage(format!("--for: {e}")))?;
            if length.is_zero() || length > MAX_SILENCE {
                return Err(Fatal::Usage(format!(
                    "--for: expected more than 0s and at most {}",
                    duration::human(MAX_SILENCE)
                )));
            }
            let user = std::env::var("USER").unwrap_or_else(|_| "someone".to_owned());
            let created_by = format!("{user}@{}", hostname_or_localhost());
            let reason = reason.unwrap_or_else(|| format!("silenced by {created_by}"));
            if reason.trim().is_empty() || reason.chars().any(char::is_control) {
                return Err(Fatal::Usage("--reason: expected one line of text".into()));
            }
            let mut store = open_store(config, Access::ReadWrite)?;
            let silence = Silence {
                id: 0,
                target: target.clone(),
                starts_at: now,
                ends_at: now.plus(length),
                reason,
                created_by,
            };
            let id = store.add_silence(&silence, now).map_err(failed)?;
            let shown = if target == ALL_TARGETS { "every target" } else { target.as_str() };
            println!(
                "silence #{id}: {shown} until {} ({}): {}",
                silence.ends_at,
                duration::human(length),
                silence.reason
            );
            println!("a running monitor holds back its notifications within 10s");
            let known = store.series().map_err(failed)?;
            if target != ALL_TARGETS && !known.iter().any(|(t, _)| *t == target) {
                eprintln!(
                    "note: nothing is recorded yet for {target} in {}: check that it is the URL \
                     the monitor watches",
                    store::location(&config.db_url)
                );
            }
        }
        cli::SilenceAction::List => {
            let mut store = open_store(config, Access::ReadOnly)?;
            let silences = store.silences(now).map_err(failed)?;
            print!("{}", report::silences(&silences, now));
        }
        cli::SilenceAction::Clear(which) => {
            let which = match which.as_str() {
                "all" => store::Clear::All,
                id if id.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() => store::Clear::Id(
                    id.parse()
                        .map_err(|_| Fatal::Usage(format!("--clear: {id} is not a silence id")))?,
                ),
                url => store::Clear::Target(target_name(url, "--clear")?),
            };
            let mut store = open_store(config, Access::ReadWrite)?;
            let n = store.clear_silences(&which, now).map_err(failed)?;
            if n == 0 {
                return Err(Fatal::Runtime(
                    "--clear: no silence that has not ended matches (see `api-monitor silence \
                     --list`)"
                        .into(),
                ));
            }
            println!("ended {n} silence(s): a running monitor notifies again within 10s");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `api-monitor run`: the daemon. It runs one *generation* of the runtime after another: the
/// first from `config`, the next after each SIGHUP whose config file is valid (live reload).
/// Between generations the database connection, its lock and every unwritten row pass from
/// one to the next (the ledger), the metrics and the `--listen` server stay, and each
/// target × region resumes from its recorded state, so nothing is re-alerted or lost.
fn watch(config: Config, args: cli::Args) -> Result<(), Fatal> {
    ignore_environment_proxies();
    let control = Arc::new(Control::default());
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| Fatal::Runtime(format!("cannot install the signal handlers: {e}")))?;
        let control = Arc::clone(&control);
        let mut running = config.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        if let Some(next) = reread(&args, &running) {
                            running = next.clone();
                            control.reload(next);
                        }
                    } else {
                        log::info!("stop requested; finishing in-flight work");
                        control.stop();
                    }
                }
            })
            .map_err(|e| Fatal::Runtime(format!("cannot start a thread: {e}")))?;
    }

    log_start(&config);
    // Retries (mail and database) start at one interval, at most 5 s, and back off from there.
    let retry_base = retry_base_of(&config);
    // A database that cannot work (wrong password, unknown database, missing directory, corrupt
    // file, newer schema) stops the start; one that is merely away is waited for.
    let store = match store::open(&config.db_url) {
        Ok(store) => Some(store),
        Err(e) if e.is_permanent() => return Err(Fatal::Usage(format!("--db: {e}"))),
        Err(e) => {
            log::error!(
                "DATABASE UNAVAILABLE db={} error=\"{e}\"; probing starts, decisions wait for \
                 the database",
                redact::url(&config.db_url)
            );
            None
        }
    };
    let mut ledger =
        Ledger::new(&config.db_url, Box::new(store::open), store, retry_base, Instant::now());
    let metrics = Arc::new(Registry::new());
    let host = hostname_or_localhost();
    // One holder for the process: a reload keeps the database lock it holds.
    let me = state::holder(&host);
    let current: Arc<Mutex<Arc<Snapshot>>> = Arc::default();
    let mut server = None;
    let mut config = config;
    loop {
        let shutdown = Arc::new(Shutdown::new());
        let running = start_generation(&config, ledger, &metrics, &me, &host, &shutdown)?;
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&running.snapshot);
        control.set_current(shutdown);
        if server.is_none() {
            if let Some(addr) = config.listen {
                let sources =
                    Sources { registry: Arc::clone(&metrics), status: status_page(&current) };
                let started = server::serve(&addr.to_string(), sources)
                    .map_err(|e| Fatal::Usage(format!("--listen: {e}")))?;
                log::info!(
                    "serving http://{0}/metrics, http://{0}/healthz and the status page \
                     http://{0}/",
                    started.local_addr()
                );
                server = Some(started);
            }
        }
        match running.wait() {
            Ending::Reload(handed_over) => {
                let Some(next) = control.take_next() else {
                    // A stop came with the reload: finish as a stop would.
                    stop_server(server);
                    log::info!("stopped");
                    return Ok(());
                };
                log_reload(&config, &next);
                config = next;
                ledger = *handed_over;
                ledger.set_retry_base(retry_base_of(&config));
            }
            Ending::Stopped => {
                stop_server(server);
                log::info!("stopped");
                return Ok(());
            }
            Ending::Fatal(why) => {
                stop_server(server);
                return Err(Fatal::Runtime(why));
            }
        }
    }
}

fn stop_server(server: Option<server::Server>) {
    if let Some(server) = server {
        server.stop();
    }
}

/// Who stops or reloads the running generation: the signal handlers' side of [`watch`].
#[derive(Default)]
struct Control {
    /// The running generation's stop switch (`None` before the first starts).
    current: Mutex<Option<Arc<Shutdown>>>,
    /// SIGINT/SIGTERM came: no generation starts any more.
    stopping: std::sync::atomic::AtomicBool,
    /// The configuration the next generation runs, set by a valid reload.
    next: Mutex<Option<Config>>,
}

impl Control {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        Self::lock(&self.next).take();
        if let Some(shutdown) = Self::lock(&self.current).as_ref() {
            shutdown.trigger();
        }
    }

    fn reload(&self, next: Config) {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        *Self::lock(&self.next) = Some(next);
        if let Some(shutdown) = Self::lock(&self.current).as_ref() {
            shutdown.trigger_reload();
        }
    }

    /// Makes `shutdown` the running generation's; a stop or reload that came in between
    /// applies to it at once.
    fn set_current(&self, shutdown: Arc<Shutdown>) {
        *Self::lock(&self.current) = Some(Arc::clone(&shutdown));
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            shutdown.trigger();
        } else if Self::lock(&self.next).is_some() {
            shutdown.trigger_reload();
        }
    }

    fn take_next(&self) -> Option<Config> {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        Self::lock(&self.next).take()
    }
}

/// SIGHUP: the config as the command line, the environment and the config file say now, if
/// it is valid and changes only what a reload can change; otherwise the error, logged in the
/// same words as at start, and `None` (the running configuration stays).
fn reread(args: &cli::Args, running: &Config) -> Option<Config> {
    log::info!("reload requested (SIGHUP): reading the configuration again");
    let next = match config::from_args(args.clone(), &Os) {
        Ok(next) => next,
        Err(e) => {
            log::error!("RELOAD REFUSED: {e}; the running configuration stays");
            return None;
        }
    };
    let fixed = [
        ("--db", next.db_url != running.db_url),
        ("--listen", next.listen != running.listen),
        ("--log-file", next.log_file != running.log_file),
        ("the log level (-v/-q, LOG_LEVEL)", next.log_level != running.log_level),
        ("--cluster", next.cluster.is_some() || running.cluster.is_some()),
    ];
    if let Some((what, _)) = fixed.iter().find(|(_, changed)| *changed) {
        let why = if what == &"--cluster" {
            "a cluster member cannot reload: restart it (its targets move to the others within a \
             lease)"
                .to_owned()
        } else {
            format!("{what} changed, which takes a restart")
        };
        log::error!("RELOAD REFUSED: {why}; the running configuration stays");
        return None;
    }
    Some(next)
}

/// What a reload changes, in one line.
fn log_reload(before: &Config, after: &Config) {
    let names = |c: &Config| c.targets.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    let (old, new) = (names(before), names(after));
    let added: Vec<&String> = new.iter().filter(|n| !old.contains(n)).collect();
    let removed: Vec<&String> = old.iter().filter(|n| !new.contains(n)).collect();
    let changed: Vec<&String> = (after.targets.iter())
        .filter(|t| before.targets.iter().any(|b| b.name == t.name && b != *t))
        .map(|t| &t.name)
        .collect();
    let list = |v: &[&String]| {
        if v.len() <= 10 {
            v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
        } else {
            format!("{} targets", v.len())
        }
    };
    log::info!(
        "RELOADED targets={} added={} removed={} changed={}",
        after.targets.len(),
        list(&added),
        list(&removed),
        list(&changed)
    );
}

fn retry_base_of(config: &Config) -> Duration {
    let fastest = config.targets.iter().map(|t| t.interval).min().unwrap_or(config.interval);
    fastest.min(Duration::from_secs(5))
}

/// The start line: what is watched, how, where it is recorded.
fn log_start(config: &Config) {
    let pairs: usize = config.targets.iter().map(|t| t.regions.len()).sum();
    let regions: Vec<&str> = config.regions.iter().map(|r| r.name.as_str()).collect();
    // One line whatever the scale: the URLs are listed only while they fit on it.
    let listed = if config.targets.len() <= 10 {
        config.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(",")
    } else {
        config.targets.len().to_string()
    };
    log::info!(
        "api-monitor {} starting targets={listed} regions={} pairs={pairs} interval={} \
         timeout={} failures={} successes={} db={}",
        env!("CARGO_PKG_VERSION"),
        regions.join(","),
        duration::human(config.interval),
        duration::human(config.timeout),
        config.thresholds.failures,
        config.thresholds.successes,
        redact::url(&config.db_url),
    );
}

/// Starts one generation of the runtime for `config` with `ledger`.
fn start_generation(
    config: &Config,
    ledger: Ledger,
    metrics: &Arc<Registry>,
    me: &store::Holder,
    host: &str,
    shutdown: &Arc<Shutdown>,
) -> Result<runtime::Running, Fatal> {
    let (recipients, mail) = match &config.delivery {
        Delivery::Smtp(settings) => (settings.to.clone(), true),
        Delivery::LogOnly { .. } => (Vec::new(), false),
    };
    let mailer: Box<dyn Mailer> = match &config.delivery {
        Delivery::Smtp(settings) => {
            log::info!(
                "notifications by mail via={} to={}",
                redact::url(&settings.url),
                settings.to.join(",")
            );
            Box::new(
                SmtpMailer::new(settings, SMTP_TIMEOUT)
                    .map_err(|e| Fatal::Usage(format!("--smtp: {e}")))?,
            )
        }
        Delivery::LogOnly { why } => {
            log::warn!(
                "NO EMAIL WILL BE SENT: {why}; notifications are only written to this log \
                 (set --smtp and --support)"
            );
            Box::new(LogMailer)
        }
    };

    for ch in &config.channels {
        let routed = if config.global_channels.contains(&ch.name) {
            "every notification"
        } else {
            "its targets' and regions' notifications"
        };
        log::info!(
            "notifications by channel name={} kind={} to={} gets={routed}",
            ch.name,
            ch.kind.name(),
            api_monitor::notify::channel::host(ch.url.expose())
        );
    }
    for w in &config.maintenance {
        let targets = if w.targets.is_empty() { "all".to_owned() } else { w.targets.join(",") };
        log::info!(
            "maintenance window {} targets={targets} reason={:?}: notifications held back while \
             it is open",
            api_monitor::maintenance::describe(&w.when),
            w.reason
        );
    }

    let slots = runtime::slots(&config.targets, &config.regions, metrics);
    // A reload drops the series of the pairs no longer watched; the others keep counting.
    let watched: Vec<(String, String)> =
        slots.iter().map(|s| (s.target.name.clone(), s.region.name.clone())).collect();
    metrics.keep_only(&watched);
    // Each probe in flight is a socket: the default stays within the open-file limit, so that
    // a probe starts late (logged, counted) rather than fail with "Too many open files".
    let fd_room =
        std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| probing::fd_room(&l));
    let wanted = config.concurrency.unwrap_or_else(|| {
        probing::default_size(slots.iter().map(|s| (s.target.interval, s.target.timeout)))
    });
    let concurrency = match (config.concurrency, fd_room) {
        (None, Some(room)) => wanted.min(room),
        _ => wanted,
    };
    let origin = if config.concurrency.is_some() { "--concurrency" } else { "default" };
    log::info!("probes in flight at most={concurrency} source={origin}");
    if let Some(room) = fd_room.filter(|&room| wanted > room) {
        let outcome = if config.concurrency.is_some() {
            "probes past it fail with \"Too many open files\": lower --concurrency or"
        } else {
            "the default stays within it, so probes may start late:"
        };
        log::warn!(
            "the open-file limit leaves room for {room} probes in flight, and {wanted} may be \
             needed ({origin}); {outcome} raise the limit (ulimit -n, systemd LimitNOFILE=, \
             docker --ulimit nofile=)"
        );
    }
    metrics.set_workers(concurrency);
    let cluster = config.cluster.as_ref().map(|settings| {
        // Unique per process run: a restarted member is a new member (the old one's loss is
        // announced once, by the key of its last heartbeat).
        let key = store::new_key();
        let me = MemberId::new(format!("{host}-{}-{}", std::process::id(), &key[..6]));
        log::info!(
            "cluster member cluster={} site={} instance={me} lease={} quorum={}",
            settings.name,
            settings.site,
            duration::human(settings.lease),
            settings.quorum.map_or_else(|| "majority".to_string(), |q| q.to_string()),
        );
        ClusterParts {
            identity: Identity {
                settings: settings.clone(),
                me,
                version: env!("CARGO_PKG_VERSION"),
            },
            db_url: config.db_url.expose().to_owned(),
        }
    });
    let parts = Parts {
        ledger,
        mailer,
        recipients: Recipients {
            global: recipients,
            mail,
            channels: config.global_channels.clone(),
            defined: config.channels.clone().into(),
        },
        clock: Arc::new(SystemClock),
        metrics: Arc::clone(metrics),
        concurrency,
        shutdown: Arc::clone(shutdown),
        me: me.clone(),
        retry_base: retry_base_of(config),
        cluster,
        windows: config.maintenance.clone(),
    };
    runtime::start(slots, parts).map_err(|e| Fatal::Runtime(format!("cannot start a thread: {e}")))
}

/// The status page's source: the history the state owner publishes in memory, so a page view
/// never waits on the database or on the state owner.
fn status_page(current: &Arc<Mutex<Arc<Snapshot>>>) -> server::StatusSource {
    let current = Arc::clone(current);
    Arc::new(move || {
        let now = SystemClock.now();
        let snapshot = Arc::clone(&current.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(match snapshot.cluster() {
            Some(panel) => status_page::render_member(&snapshot.rows(), &panel, now),
            None => status_page::render(&snapshot.rows(), now),
        })
    })
}

/// Probes must go exactly where the configuration says — directly, or through a region's
/// proxy. The probe sets its proxy explicitly (ureq's default would read `ALL_PROXY`,
/// `HTTPS_PROXY`, `HTTP_PROXY`), so these variables have no effect; they are still dropped,
/// loudly, so an operator who set them learns that. Called before any thread starts.
fn ignore_environment_proxies() {
    for name in ["http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "HTTP_PROXY"]
    {
        if std::env::var_os(name).is_some() {
            log::warn!("ignoring {name} from the environment: use --region NAME=PROXY_URL to probe through a proxy");
            std::env::remove_var(name);
        }
    }
}

/// UTC timestamps, our own messages only (dependencies' chatter stays out), to stderr and
/// optionally a file.
fn init_logging(config: &Config) -> Result<(), Fatal> {
    use simplelog::{ConfigBuilder, LevelFilter, SharedLogger, WriteLogger};

    let log_config = ConfigBuilder::new()
        .set_time_format_custom(simplelog::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_allow_str("api_monitor")
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> =
        vec![WriteLogger::new(config.log_level, log_config.clone(), std::io::stderr())];
    if let Some(path) = &config.log_file {
        let file =
            std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
                Fatal::Usage(format!("--log-file: cannot open {}: {e}", path.display()))
            })?;
        loggers.push(WriteLogger::new(config.log_level, log_config, file));
    }
    simplelog::CombinedLogger::init(loggers)
        .map_err(|e| Fatal::Runtime(format!("cannot start logging: {e}")))
}
