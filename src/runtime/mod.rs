//! The running monitor: a few threads, each with one job, and one owner of state.
//!
//! ```text
//!   scheduler ──Job──▶ probe pool (1…N workers) ──Event::Probed──▶ state owner ─Notification─▶ courier
//!       ▲                    │                                        ▲    │                  │
//!       └──────Done──────────┘                                        │    └─ ledger (db) ◀───┘
//!                                                                     └──Event::Delivered/Failed
//! ```
//!
//! - The **scheduler** ([`schedule::Scheduler`]) keeps a min-heap of due times, one per target ×
//!   region ("slot"), at a fixed rate, first probes spread over one interval. It never dispatches
//!   a slot whose probe is still in flight.
//! - The **probe pool** ([`pool::Pool`]) runs probes on at most `--concurrency` workers, started
//!   on demand. Workers update the per-probe metrics (and so `/healthz` liveness) themselves.
//! - The **state owner** ([`state::StateOwner`]) is the only thread with mutable monitor state:
//!   detectors, reminders, blindness, the all-regions scope, the ledger (`state` rows and the
//!   outbox) and the recent history it publishes for the status page. Its decisions for one
//!   outcome are the pure [`step::step`].
//! - The **courier** ([`courier`]) carries one notification at a time to the mail server.
//!
//! A slow database delays only the state owner; a slow mail server only the courier; a hung
//! target only the worker probing it (for at most its timeout). Nothing is dropped: outcomes wait
//! in the state owner's channel, in order.

pub mod coordinator;
pub mod courier;
pub mod ledger;
pub mod pool;
pub mod recorder;
pub mod schedule;
pub mod state;
pub mod step;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Region, Target};
use crate::notify::mailer::{LogMailer, Mailer};
use crate::probe::{speed_verdict, Prober};
use crate::runtime::coordinator::{Gate, Identity};
use crate::runtime::ledger::Ledger;
use crate::runtime::pool::{Job, Lateness, Pool};
use crate::runtime::schedule::{Scheduler, Shutdown};
use crate::runtime::state::{Ending, Event, Member, Owned, Recipients, Snapshot, StateOwner};
use crate::store::Holder;
use crate::timestamp::Clock;
use crate::web::metrics::{Registry, WatchMetrics};

/// Each long-lived thread's stack: their loops are shallow.
const STACK_SIZE: usize = 256 * 1024;

/// One target as probed from one region: what a probe and the state owner need to know of it.
/// Built once at start; slot numbers index every per-slot table.
#[derive(Clone)]
pub struct Slot {
    pub target: Target,
    pub region: Region,
    /// The region's proxy as the HTTP client takes it (`None`: direct).
    pub proxy: Option<String>,
    /// The other slots of the same target (its other regions), for "down from all regions".
    pub siblings: Vec<usize>,
    pub metrics: WatchMetrics,
    pub prober: Arc<dyn Prober>,
}

/// Builds a [`Prober`] with a given whole-request timeout.
pub type ProberFactory = Box<dyn Fn(Duration) -> Box<dyn Prober> + Send + Sync>;

/// Every target × region pair, in target order then region order, with its metrics registered
/// (so `/healthz` watches it from the start) and its prober (one per distinct timeout).
pub fn slots(
    targets: &[Target],
    regions: &[Region],
    metrics: &Registry,
    probers: &ProberFactory,
) -> Vec<Slot> {
    let mut by_timeout: HashMap<Duration, Arc<dyn Prober>> = HashMap::new();
    let now = Instant::now();
    let mut slots: Vec<Slot> = Vec::new();
    for target in targets {
        let first = slots.len();
        for region in regions.iter().filter(|r| target.regions.contains(&r.name)) {
            let prober = by_timeout
                .entry(target.timeout)
                .or_insert_with(|| Arc::from(probers(target.timeout)))
                .clone();
            slots.push(Slot {
                metrics: metrics.register(
                    &target.name,
                    &region.name,
                    target.interval,
                    target.timeout,
                    now,
                ),
                proxy: region.proxy_address(),
                target: target.clone(),
                region: region.clone(),
                siblings: Vec::new(),
                prober,
            });
        }
        let last = slots.len();
        for (n, slot) in slots[first..last].iter_mut().enumerate() {
            slot.siblings = (first..last).filter(|&m| m != first + n).collect();
        }
    }
    slots
}

/// The parts the runtime is built from.
pub struct Parts {
    pub ledger: Ledger,
    pub mailer: Box<dyn Mailer>,
    pub recipients: Recipients,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Registry>,
    /// The most probe workers.
    pub concurrency: usize,
    pub shutdown: Arc<Shutdown>,
    /// This process as the database's holder.
    pub me: Holder,
    /// The first wait before a failed delivery is retried.
    pub retry_base: Duration,
    /// Cluster mode: who this member is, and the database the cluster shares.
    pub cluster: Option<ClusterParts>,
    /// The config file's maintenance windows (silences come from the database).
    pub windows: Vec<crate::maintenance::Window>,
}

/// What cluster mode adds to the runtime: a coordinator thread (heartbeat, view, lease) and
/// the courier's fence, each with its own connection to `db_url`.
pub struct ClusterParts {
    pub identity: Identity,
    pub db_url: String,
}

/// A started runtime: its snapshot for the status page, and how to wait for its end.
pub struct Running {
    pub snapshot: Arc<Snapshot>,
    /// Probes that started late because every worker was busy (for `/metrics`).
    pub lateness: Arc<Lateness>,
    pub workers: usize,
    join: Box<dyn FnOnce() -> Ending + Send>,
}

impl Running {
    /// Waits until shutdown has been triggered and every thread has finished its in-flight
    /// work: probes end, the courier's delivery in flight ends (or is cut), leftovers are
    /// reported. Says whether the monitor stopped because it was asked to, or had to.
    pub fn wait(self) -> Ending {
        (self.join)()
    }
}

/// Starts the scheduler, the pool, the state owner and the courier for `slots`; they run until
/// `parts.shutdown` is triggered (see [`Running::wait`]).
pub fn start(slots: Vec<Slot>, parts: Parts) -> std::io::Result<Running> {
    let Parts {
        ledger,
        mut mailer,
        recipients,
        clock,
        metrics,
        concurrency,
        shutdown,
        me,
        retry_base,
        cluster,
        windows,
    } = parts;
    let slots: Arc<[Slot]> = slots.into();
    // Every slot is probed, unless cluster mode says it is another member's.
    let owned: Arc<[AtomicBool]> =
        slots.iter().map(|_| AtomicBool::new(cluster.is_none())).collect();
    let member = cluster
        .as_ref()
        .map(|c| Member { identity: c.identity.clone(), owned: Arc::clone(&owned) });
    let gate = cluster.as_ref().map(|c| Gate::new(&c.identity, &c.db_url));
    let channels = Arc::clone(&recipients.defined);
    if let Some(c) = &cluster {
        metrics.set_cluster_site(&c.identity.settings.site);
    }
    let (events_tx, events_rx) = mpsc::channel::<Event>();
    let (notifications_tx, notifications_rx) = mpsc::channel();
    let (channel_parcels_tx, channel_parcels_rx) = mpsc::channel();
    let (owner, snapshot) = StateOwner::start(Owned {
        slots: Arc::clone(&slots),
        ledger,
        recipients,
        clock: Arc::clone(&clock),
        metrics: Arc::clone(&metrics),
        couriers: [notifications_tx, channel_parcels_tx],
        events: events_tx.clone(),
        abort: mailer.abort_handle(),
        me,
        shutdown: Arc::clone(&shutdown),
        retry_base,
        member,
        windows: windows.into(),
    })?;
    let courier = {
        let events = events_tx.clone();
        let clock = Arc::clone(&clock);
        let channels = Arc::clone(&channels);
        spawn("courier", move || {
            courier::run(&notifications_rx, &events, mailer.as_mut(), &channels, &*clock, gate)
        })?
    };
    // The channels' courier: webhook, Slack and PagerDuty notifications, one at a time, so a
    // receiver that hangs never holds up an email. It has no mail server of its own.
    let channel_courier = {
        let events = events_tx.clone();
        let clock = Arc::clone(&clock);
        let gate = cluster.as_ref().map(|c| Gate::new(&c.identity, &c.db_url));
        spawn("courier-channels", move || {
            let mut no_mail = LogMailer;
            courier::run(&channel_parcels_rx, &events, &mut no_mail, &channels, &*clock, gate)
        })?
    };
    let state = spawn("state", move || owner.run(&events_rx))?;
    let coordinator = match cluster {
        Some(ClusterParts { identity, db_url }) => {
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let events = events_tx.clone();
            let thread = spawn("coordinator", move || {
                coordinator::run(&identity, &db_url, &stop_rx, &events)
            })?;
            Some((stop_tx, thread))
        }
        None => None,
    };

    // Probe workers: probe, count, hand the outcome to the state owner, free the slot.
    let (done_tx, done_rx) = mpsc::channel::<Option<(usize, Instant)>>();
    let lateness = metrics.lateness();
    let pool = {
        let slots = Arc::clone(&slots);
        let events = events_tx.clone();
        let done = done_tx.clone();
        let shutdown = Arc::clone(&shutdown);
        let metrics = Arc::clone(&metrics);
        Pool::new(concurrency, Arc::clone(&lateness), move |job: Job| {
            if shutdown.is_triggered() {
                return;
            }
            if !owned[job.slot].load(Ordering::Relaxed) {
                // Another member of the site probes it now.
                slots[job.slot].metrics.elsewhere(Instant::now());
                let _ = done.send(Some((job.slot, Instant::now())));
                return;
            }
            let slot = &slots[job.slot];
            let at = clock.now();
            let outcome = speed_verdict(
                slot.prober.probe(&slot.target.url, slot.proxy.as_deref()),
                slot.target.slow,
            );
            slot.metrics.probe(&outcome, Instant::now());
            // Sends fail only when the receiver is gone, i.e. while stopping.
            metrics.outcome_sent();
            let _ = events.send(Event::Probed { slot: job.slot, outcome, at });
            let _ = done.send(Some((job.slot, Instant::now())));
        })
    };
    {
        let done = done_tx.clone();
        shutdown.on_trigger(move || {
            let _ = done.send(None);
        });
    }
    drop(done_tx);
    let scheduler = {
        let pool = Arc::clone(&pool);
        let intervals: Vec<Duration> = slots.iter().map(|s| s.target.interval).collect();
        let shutdown = Arc::clone(&shutdown);
        spawn("scheduler", move || {
            let mut scheduler = Scheduler::new(&intervals, Instant::now());
            while !shutdown.is_triggered() {
                let now = Instant::now();
                while let Some((slot, due)) = scheduler.pop_due(now) {
                    pool.submit(Job { slot, due });
                }
                let message = match scheduler.next_due() {
                    Some(due) => done_rx.recv_timeout(due.saturating_duration_since(now)),
                    None => done_rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match message {
                    Ok(Some((slot, ended))) => scheduler.done(slot, ended),
                    Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        })?
    };
    let workers = pool.max();
    let join = Box::new(move || {
        if scheduler.join().is_err() {
            log::error!("the scheduler thread panicked");
        }
        pool.close();
        let _ = events_tx.send(Event::Stop);
        drop(events_tx);
        let ending = state.join().unwrap_or_else(|_| {
            log::error!("the state thread panicked");
            Ending::Fatal("the state thread panicked".into())
        });
        if courier.join().is_err() {
            log::error!("the courier thread panicked");
        }
        // The state owner waited for the channels' courier as for the mail courier; a POST it
        // could not cut (no abort handle: at most its deadline) is left to the process's exit,
        // its notification still in the outbox.
        let until = Instant::now() + Duration::from_secs(1);
        while !channel_courier.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if channel_courier.is_finished() {
            if channel_courier.join().is_err() {
                log::error!("the channels' courier thread panicked");
            }
        } else {
            log::warn!(
                "the channels' courier is still posting; its notification stays in the outbox"
            );
        }
        // Last, so that the lease is let go only once nothing more can be sent from here.
        if let Some((stop, thread)) = coordinator {
            let _ = stop.send(());
            if thread.join().is_err() {
                log::error!("the coordinator thread panicked");
            }
        }
        ending
    });
    Ok(Running { snapshot, lateness, workers, join })
}

fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).stack_size(STACK_SIZE).spawn(body)
}
