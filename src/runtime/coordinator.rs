//! The coordinator: in cluster mode, the thread that keeps this member in the cluster.
//!
//! Every beat (a third of the lease) it writes this member's heartbeat, reads every member and
//! the leader row in one query, decides about the leader lease ([`lease::decide`]) and carries
//! the decision out with one conditional statement; while it leads, it also reads each site's
//! latest state of every target. It hands the state owner what it saw as one
//! [`Event::Cluster`], and decides nothing else: the state owner computes what this member
//! probes and, as leader, what is announced.
//!
//! Why a thread and a database connection of its own: the heartbeat is what keeps this member's
//! targets and lease. Were it queued behind the recorder's writes, a slow write or a backlog
//! replay would silently cost the member its place. Steady state costs a follower two queries
//! per beat (heartbeat, view) and the leader four (plus renewal and the sites' states).
//!
//! Leadership is bounded by the local monotonic clock too: a lease won or renewed by a
//! statement *sent* at instant `t` is trusted until `t + lease`, never longer, whatever the
//! database said later. A leader frozen (SIGSTOP, a VM pause) past that instant wakes up knowing
//! it may have been replaced, and sends nothing until a new beat says otherwise.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::cluster::lease::{self, LeaseDecision, MemberRow};
use crate::cluster::MemberId;
use crate::config::ClusterSettings;
use crate::redact;
use crate::runtime::state::Event;
use crate::store::cluster::{self as cluster_store, ClusterStore, SiteState};
use crate::store::StoreError;

/// Member rows older than this are forgotten: their sites no longer count as missing, and a
/// new leader does not announce them.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// This member's leadership, as far as the database and the local clock vouch for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lead {
    pub term: u64,
    /// Until when this member may act as leader: the instant its last winning statement was
    /// sent, plus the lease.
    pub valid_until: Instant,
}

/// What one beat saw.
#[derive(Debug)]
pub struct View {
    /// Every member row not older than [`FORGET_AFTER`], sorted by id, with ages by the
    /// database's clock.
    pub members: Vec<MemberRow>,
    /// The leader's id and term as the row said before this beat's decision.
    pub leader: Option<(MemberId, u64)>,
    /// `Some` while this member leads.
    pub lead: Option<Lead>,
    /// While leading: the latest recorded state of every target from each known site.
    pub sites: Option<Vec<SiteState>>,
    /// When this beat began: this member's own heartbeat is at least this recent.
    pub at: Instant,
}

/// Who this member is in the cluster.
#[derive(Clone, Debug)]
pub struct Identity {
    pub settings: ClusterSettings,
    pub me: MemberId,
    pub version: &'static str,
}

/// Runs the coordinator until `stop` says so (or the state owner is gone); leaves the cluster
/// cleanly at the end (member row deleted, lease expired if held).
pub fn run(identity: &Identity, db_url: &str, stop: &Receiver<()>, events: &Sender<Event>) {
    let mut link = Link { url: db_url.to_owned(), store: None, down_since: None };
    let every = identity.settings.beat_every();
    let mut next = Instant::now();
    while let Err(RecvTimeoutError::Timeout) =
        stop.recv_timeout(next.saturating_duration_since(Instant::now()))
    {
        let at = Instant::now();
        next = at + every;
        let event = match beat(&mut link, identity, at) {
            Ok(view) => Event::Cluster(Some(view)),
            Err(e) => {
                link.failed(&e);
                Event::Cluster(None)
            }
        };
        if events.send(event).is_err() {
            break;
        }
    }
    let ClusterSettings { name, .. } = &identity.settings;
    if let Ok(store) = link.store() {
        match store.leave(name, &identity.me) {
            Ok(()) => log::info!("left cluster={name} instance={}", identity.me),
            Err(e) => log::warn!("could not leave cluster={name} cleanly: {e}"),
        }
    }
}

/// One beat: heartbeat, view, lease decision, and the sites' states while leading.
fn beat(link: &mut Link, identity: &Identity, at: Instant) -> Result<View, StoreError> {
    let Identity { settings, me, version } = identity;
    let store = link.store()?;
    store.beat(&settings.name, me, &settings.site, version)?;
    let (mut members, leader) = store.view(&settings.name)?;
    members.retain(|m| m.age < FORGET_AFTER);
    let decision = lease::decide(leader.as_ref(), me, settings.lease);
    let sent = Instant::now();
    let won = store.lead(&settings.name, me, &decision, settings.lease)?;
    let lead = match (won, &decision) {
        (true, LeaseDecision::Keep { term }) => Some(Lead { term: *term, valid_until: sent }),
        (true, LeaseDecision::TakeOver { next_term }) => {
            Some(Lead { term: *next_term, valid_until: sent })
        }
        _ => None,
    }
    .map(|l| Lead { valid_until: l.valid_until + settings.lease, ..l });
    let sites = match lead {
        Some(_) => {
            let mut known: Vec<String> = members.iter().map(|m| m.site.clone()).collect();
            known.sort();
            known.dedup();
            Some(store.site_states(&known)?)
        }
        None => None,
    };
    link.recovered();
    Ok(View { members, leader: leader.map(|l| (l.holder, l.term)), lead, sites, at })
}

/// The coordinator's own connection, reopened after a failure.
struct Link {
    url: String,
    store: Option<Box<dyn ClusterStore>>,
    down_since: Option<Instant>,
}

impl Link {
    fn store(&mut self) -> Result<&mut dyn ClusterStore, StoreError> {
        if self.store.is_none() {
            self.store = Some(cluster_store::open(&self.url)?);
        }
        match self.store.as_mut() {
            Some(store) => Ok(store.as_mut()),
            None => Err(StoreError::Query("no cluster connection".into())),
        }
    }

    /// Logs the first failure of an episode; the connection is reopened at the next beat.
    fn failed(&mut self, e: &StoreError) {
        self.store = None;
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            log::error!(
                "CLUSTER HEARTBEAT FAILED db={} error=\"{e}\": if it stays down for a lease, this \
                 member stops probing and sending (the others take its targets)",
                redact::url(&self.url)
            );
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.down_since.take() {
            log::warn!(
                "cluster heartbeat works again after {}",
                crate::duration::human(since.elapsed())
            );
        }
    }
}

/// The courier's fence in cluster mode: a notification goes to the mail server only while this
/// member still holds the lease under the term it was queued with — by the local clock, then by
/// the database ([`ClusterStore::may_send`], one query), with its own connection so that it
/// never waits behind the recorder.
pub struct Gate {
    url: String,
    cluster: String,
    me: MemberId,
    lease: Duration,
    store: Option<Box<dyn ClusterStore>>,
}

impl Gate {
    pub fn new(identity: &Identity, db_url: &str) -> Gate {
        Gate {
            url: db_url.to_owned(),
            cluster: identity.settings.name.clone(),
            me: identity.me.clone(),
            lease: identity.settings.lease,
            store: None,
        }
    }

    /// Whether notification `key`, queued under `lead`, may be sent now; `Err` says why not.
    pub fn may_send(&mut self, key: &str, lead: &Lead) -> Result<(), String> {
        if Instant::now() >= lead.valid_until {
            return Err(format!("the lease of term {} is over by this host's clock", lead.term));
        }
        if self.store.is_none() {
            self.store = Some(cluster_store::open(&self.url).map_err(|e| e.to_string())?);
        }
        let Some(store) = self.store.as_mut() else { return Err("no connection".into()) };
        match store.may_send(&self.cluster, &self.me, lead.term, self.lease, key) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "term {} no longer holds the lease, or the notification is sent or dead",
                lead.term
            )),
            Err(e) => {
                self.store = None;
                Err(e.to_string())
            }
        }
    }
}
