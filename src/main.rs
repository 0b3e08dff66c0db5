//! The `api-monitor` binary: parse → configure → build the adapters → run.
//!
//! This is the one place that prints a fatal error and picks the exit code: 0 for a clean stop
//! (or a healthy `check`), 1 for an unhealthy `check` or a runtime failure, 2 for a bad command
//! line or configuration — always one line naming the option.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
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
use api_monitor::runtime::{self, pool, ClusterParts, Parts, ProberFactory};
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
    let config = config::from_args(args, &Os).map_err(|e| Fatal::Usage(e.to_string()))?;
    init_logging(&config)?;
    match config.command {
        Command::Check => Ok(check(&config)),
        Command::Healthz => healthz(&config),
        Command::Report => report(&config),
        Command::Outbox => outbox(&config, requeue),
        Command::Run => watch(config).map(|()| ExitCode::SUCCESS),
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

/// `api-monitor run`: the daemon.
fn watch(config: Config) -> Result<(), Fatal> {
    ignore_environment_proxies();
    let shutdown = Arc::new(Shutdown::new());
    {
        let shutdown = Arc::clone(&shutdown);
        ctrlc::set_handler(move || {
            log::info!("stop requested; finishing in-flight work");
            shutdown.trigger();
        })
        .map_err(|e| Fatal::Runtime(format!("cannot install the signal handler: {e}")))?;
    }

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
    // Retries (mail and database) start at one interval, at most 5 s, and back off from there.
    let fastest = config.targets.iter().map(|t| t.interval).min().unwrap_or(config.interval);
    let retry_base = fastest.min(Duration::from_secs(5));
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
    let ledger =
        Ledger::new(&config.db_url, Box::new(store::open), store, retry_base, Instant::now());
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

    let metrics = Arc::new(Registry::new());
    let probers: ProberFactory = Box::new(|timeout| Box::new(HttpProber::new(timeout)));
    let slots = runtime::slots(&config.targets, &config.regions, &metrics, &probers);
    let concurrency = config.concurrency.unwrap_or_else(|| {
        pool::default_size(slots.iter().map(|s| (s.target.interval, s.target.timeout)))
    });
    let origin = if config.concurrency.is_some() { "--concurrency" } else { "default" };
    log::info!("probe pool workers={concurrency} source={origin} (at most; started on demand)");
    metrics.set_workers(concurrency);
    let host = hostname_or_localhost();
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
        metrics: Arc::clone(&metrics),
        concurrency,
        shutdown,
        me: state::holder(&host),
        retry_base,
        cluster,
    };
    let running = runtime::start(slots, parts)
        .map_err(|e| Fatal::Runtime(format!("cannot start a thread: {e}")))?;
    let server = match config.listen {
        Some(addr) => {
            let sources =
                Sources { registry: metrics, status: status_page(Arc::clone(&running.snapshot)) };
            let server = server::serve(&addr.to_string(), sources)
                .map_err(|e| Fatal::Usage(format!("--listen: {e}")))?;
            log::info!(
                "serving http://{0}/metrics, http://{0}/healthz and the status page http://{0}/",
                server.local_addr()
            );
            Some(server)
        }
        None => None,
    };
    let ending = running.wait();
    if let Some(server) = server {
        server.stop();
    }
    match ending {
        Ending::Stopped => {
            log::info!("stopped");
            Ok(())
        }
        Ending::Fatal(why) => Err(Fatal::Runtime(why)),
    }
}

/// The status page's source: the history the state owner publishes in memory, so a page view
/// never waits on the database or on the state owner.
fn status_page(snapshot: Arc<Snapshot>) -> server::StatusSource {
    Arc::new(move || {
        let now = SystemClock.now();
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
