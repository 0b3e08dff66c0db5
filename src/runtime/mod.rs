//! The running monitor: a few threads, each with one job, and one owner of state.
//!
//! ```text
//!   probing (scheduler + engine) ──Event::Probed──▶ state owner ─Notification─▶ courier
//!                                                    ▲    │                  │
//!                                                    │    └─ ledger (db) ◀───┘
//!                                                    └──Event::Delivered/Failed
//! ```
//!
//! - The **probing** thread ([`probing::Probing`]) keeps the due times of every target × region
//!   ("slot") in a min-heap ([`schedule::Scheduler`]: fixed rate, first probes spread over one
//!   interval) and runs their probes on the probe engine ([`crate::probe::engine`]): at most
//!   `--concurrency` in flight, each a socket, none a thread. It never starts a slot whose probe
//!   is still in flight, and updates the per-probe metrics (and so `/healthz` liveness) itself.
//! - The **state owner** ([`state::StateOwner`]) is the only thread with mutable monitor state:
//!   detectors, reminders, blindness, the all-regions scope, the ledger (`state` rows and the
//!   outbox) and the recent history it publishes for the status page. Its decisions for one
//!   outcome are the pure [`step::step`].
//! - The **courier** ([`courier`]) carries one notification at a time to the mail server.
//!
//! A slow database delays only the state owner; a slow mail server only the courier; a hung
//! target only its own probe (for at most its timeout), holding one of
//! `--concurrency` places. Nothing is dropped: outcomes wait in the state owner's channel, in
//! order (a steady healthy one first waits up to 5 s on the probing thread to go with others:
//! [`probing::Handoff`]).

pub mod coordinator;
pub mod courier;
pub mod ledger;
pub mod ownership;
pub mod probing;
pub mod recorder;
pub mod schedule;
pub mod state;
pub mod step;

use crate::runtime::ownership::Ownership;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Region, Target};
use crate::notify::mailer::{LogMailer, Mailer};
use crate::runtime::coordinator::{Gate, Identity};
use crate::runtime::ledger::Ledger;
use crate::runtime::probing::{Lateness, Probing};
use crate::runtime::schedule::Shutdown;
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
}

/// Every target × region pair, in target order then region order, with its metrics registered
/// (so `/healthz` watches it from the start).
pub fn slots(targets: &[Target], regions: &[Region], metrics: &Registry) -> Vec<Slot> {
    let now = Instant::now();
    let mut slots: Vec<Slot> = Vec::new();
    for target in targets {
        let first = slots.len();
        for region in regions.iter().filter(|r| target.regions.contains(&r.name)) {
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
    /// The most probes in flight at once.
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
    /// Probes that started late because `--concurrency` probes were in flight (for `/metrics`).
    pub lateness: Arc<Lateness>,
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

/// Starts the probing thread, the state owner and the couriers for `slots`; they run until
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
    let owned = Arc::new(Ownership::new(slots.len(), cluster.is_none()));
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

    // The probing thread: due probes start on the engine, outcomes go to the state owner.
    let lateness = metrics.lateness();
    let engine = crate::probe::engine::Engine::new()?;
    let probing = {
        let probing = Probing {
            slots: Arc::clone(&slots),
            owned,
            events: events_tx.clone(),
            metrics: Arc::clone(&metrics),
            clock: Arc::clone(&clock),
            lateness: Arc::clone(&lateness),
            max: concurrency,
        };
        let shutdown = Arc::clone(&shutdown);
        spawn("probing", move || probing.run(engine, &shutdown))?
    };
    let join = Box::new(move || {
        if probing.join().is_err() {
            log::error!("the probing thread panicked");
        }
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
    Ok(Running { snapshot, lateness, join })
}

fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).stack_size(STACK_SIZE).spawn(body)
}
