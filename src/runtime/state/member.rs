//! The state owner in cluster mode: this member's share of the targets, and — while it leads —
//! the global decisions and the announcements of members that stop or resume reporting.
//!
//! **The share.** At every view (one per beat, from [`crate::runtime::coordinator`]) the live
//! members of this member's site decide, by rendezvous hashing ([`assign::owner`]), which target
//! each probes. A target this member gains is *adopted*: its outcomes wait while the site's
//! recorded history of it is read, then its detector resumes from the site's last row — so a
//! target that moves mid-outage is neither announced again nor loses its recovery. A target it
//! loses stops being probed here. A member that cannot heartbeat for a lease owns nothing:
//! by then the others have taken its targets.
//!
//! **Site transitions** are recorded as `state` rows of the site (region = site) and never
//! mailed: only the leader announces, and only global transitions.
//!
//! **The leader** reads every site's latest row of every target each beat and combines them
//! with the site quorum ([`quorum::judge`]). A global transition is a `state` row of region
//! [`GLOBAL`] and its notification, written by a commit fenced by the lease's term; the email
//! goes out only once that write succeeded, and the courier checks the term again in the
//! database right before sending ([`crate::runtime::coordinator::Gate`]). A leader that loses
//! the lease (by the database or by its own clock) drops its outbox at once; the next leader
//! resumes the global state and the outbox from the database.
//!
//! **Members.** The leader mails once when a member's heartbeat expires (`MEMBER LOST`) and once
//! when it returns (`MEMBER BACK`). The key of a loss notification is derived from the member
//! and its last heartbeat, so a new leader that sees the same loss writes nothing new and the
//! courier's check finds it sent. A member that stops cleanly leaves the cluster and is not
//! announced.

use crate::runtime::ownership::Ownership;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::{held_from, Held, StateOwner, MAX_CHANGES, WAITING_PER_PAIR};
use crate::cluster::lease::{members_alive, site_members, MemberRow};
use crate::cluster::quorum::{self, GlobalHealth, GlobalTransition, SiteView};
use crate::cluster::{assign, MemberId};
use crate::config::cluster::GLOBAL;
use crate::detector::{Health, Transition};
use crate::duration::human;
use crate::history::{self, Change};
use crate::maintenance;
use crate::notify::channel;
use crate::notify::message::{self, Email, MemberNotice, Notice, Sites};
use crate::notify::outbox::Outbox;
use crate::probe::Outcome;
use crate::runtime::coordinator::{Identity, Lead, View};
use crate::runtime::ledger::Write;
use crate::runtime::recorder::Job;
use crate::runtime::Slot;
use crate::store::cluster::SiteState;
use crate::store::{derived_key, new_key, Commit, NewState, Notification, OutboxEntry, StateRow};
use crate::timestamp::Timestamp;
use crate::web::status_page::ClusterPanel;

/// What the runtime hands the state owner in cluster mode.
pub struct Member {
    pub identity: Identity,
    /// Per slot, whether this member probes it now: written here, read by the probing thread.
    pub owned: Arc<Ownership>,
}

/// A slot being adopted: the outcomes that wait for its history.
struct Adoption {
    waiting: VecDeque<(Outcome, Timestamp)>,
    /// Whether its history has been asked and not yet answered.
    asked: bool,
}

/// This member's standing in the cluster.
pub(super) struct Membership {
    identity: Identity,
    owned: Arc<Ownership>,
    adopting: HashMap<usize, Adoption>,
    /// The live members of this site the share was computed from; `None`: owns nothing.
    share: Option<Vec<MemberId>>,
    /// When the last successful beat began.
    last_beat: Option<Instant>,
    /// Targets this member wins but takes at the next beat (see [`claim`]).
    deferred: usize,
    lead: Option<Leading>,
}

/// This member as leader.
struct Leading {
    lead: Lead,
    /// Per slot (one per target), the global state; `None` until it is read from the database.
    globals: Option<Vec<Global>>,
    /// The latest view's members and sites while the global state is being read: judged as
    /// soon as it is, so a takeover costs no extra beat.
    unjudged: Option<(Vec<MemberRow>, Vec<SiteState>)>,
    /// Whether the global state and outbox are asked and not yet answered.
    asked: bool,
    /// Members alive at the last view, with their sites; `None` before the first judged view.
    alive: Option<BTreeMap<MemberId, String>>,
    /// Members this leader announced lost, with the last heartbeat they were lost at.
    lost: HashMap<MemberId, Timestamp>,
    /// Per slot, the sites that saw it down at the last view (for the "seen down" line).
    partial: Vec<Vec<String>>,
}

/// The global state of one target, as the leader knows it.
#[derive(Default)]
struct Global {
    health: Option<GlobalHealth>,
    since: Option<Timestamp>,
    changes: Vec<Change>,
    /// Reminder periods of the current global outage already covered (see [`reminder_due`]).
    reminded: u128,
    /// What maintenance held back of this target's global notifications (see [`Held`]).
    held: Option<Held>,
}

/// The reminder period `k` (the `k`-th multiple of `every` since the outage began at `since`)
/// that is due at `now` and not yet covered by `reminded`, if any.
fn reminder_due(
    every: Option<std::time::Duration>,
    since: Timestamp,
    now: Timestamp,
    reminded: u128,
) -> Option<u128> {
    let every = every?.as_millis().max(1);
    let period = now.since(since).as_millis() / every;
    (period > reminded).then_some(period)
}

impl Membership {
    pub(super) fn new(member: Member) -> Membership {
        Membership {
            identity: member.identity,
            owned: member.owned,
            adopting: HashMap::new(),
            share: None,
            last_beat: None,
            deferred: 0,
            lead: None,
        }
    }

    /// The lead to send notifications under, while it holds by this host's clock and the
    /// global state is known.
    pub(super) fn sending_lead(&self, now: Instant) -> Option<Lead> {
        self.lead
            .as_ref()
            .filter(|l| l.globals.is_some() && now < l.lead.valid_until)
            .map(|l| l.lead)
    }

    /// Whether this member leads with its state read (it then rescans the outbox).
    pub(super) fn leads(&self) -> bool {
        self.lead.as_ref().is_some_and(|l| l.globals.is_some())
    }

    /// The next instant the share or the lead expires by this host's clock.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        let share =
            self.share.as_ref().and(self.last_beat).map(|at| at + self.identity.settings.lease);
        let lead = self.lead.as_ref().map(|l| l.lead.valid_until);
        share.into_iter().chain(lead).min()
    }

    /// Whether `slot`'s outcome is decided now (`Ok`), waits for its adoption, or is not ours.
    fn accepts(&mut self, slot: usize, outcome: Outcome, at: Timestamp) -> Option<Outcome> {
        if let Some(adoption) = self.adopting.get_mut(&slot) {
            if adoption.waiting.len() == WAITING_PER_PAIR {
                adoption.waiting.pop_front();
            }
            adoption.waiting.push_back((outcome, at));
            return None;
        }
        let mine = slot < self.owned.len() && self.owned.is_mine(slot);
        mine.then_some(outcome)
    }
}

/// Whether this member probes a target after a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    Mine,
    /// Mine now, but its previous owner is alive and probes it until its own next beat shows
    /// it the new membership: taken at the next beat, so that two members never probe (and
    /// record) the same target. A target whose owner is gone is taken at once.
    NextBeat,
    NotMine,
}

/// PURE: `me`'s claim on `target` with the live members `now` of its site, given who the members
/// were `before` (the last share).
fn claim(target: &str, me: &MemberId, before: &[MemberId], now: &[MemberId]) -> Claim {
    if assign::owner(target, now) != Some(me) {
        return Claim::NotMine;
    }
    match assign::owner(target, before) {
        Some(previous) if previous != me && now.contains(previous) => Claim::NextBeat,
        _ => Claim::Mine,
    }
}

/// Where a leader's notification goes: the email's recipients (comma-separated) and the
/// channels (names).
struct To {
    emails: String,
    channels: Vec<String>,
}

impl StateOwner {
    /// A probe outcome in cluster mode.
    pub(super) fn member_probed(&mut self, slot: usize, outcome: Outcome, at: Timestamp) {
        let Some(m) = self.member.as_mut() else { return };
        if let Some(outcome) = m.accepts(slot, outcome, at) {
            self.observe(slot, &outcome, at, super::Logged::Not);
        }
    }

    /// A beat's view (`None`: the beat failed; the share and lead expire by the clock).
    pub(super) fn member_view(&mut self, view: Option<View>) {
        let Some(view) = view else { return };
        if let Some(m) = self.member.as_mut() {
            m.last_beat = Some(view.at);
            let alive = members_alive(&view.members, m.identity.settings.lease).len();
            self.metrics.set_cluster_members(alive);
        }
        self.reshare(&view.members);
        self.relead(&view);
        if let Some(m) = self.member.as_ref() {
            self.snapshot.set_cluster(ClusterPanel {
                name: m.identity.settings.name.clone(),
                site: m.identity.settings.site.clone(),
                lease: m.identity.settings.lease,
                members: view.members,
                leader: view.leader,
                owned: (0..m.owned.len()).map(|slot| m.owned.is_mine(slot)).collect(),
            });
        }
    }

    /// Drops what this host's clock says no longer holds: the share after a lease without a
    /// heartbeat, the lead at its end.
    pub(super) fn member_tend(&mut self, now: Instant) {
        let Some(m) = self.member.as_ref() else { return };
        let lease = m.identity.settings.lease;
        if m.share.is_some() && m.last_beat.is_none_or(|at| now >= at + lease) {
            log::error!(
                "CUT OFF: no heartbeat reached the database for {}; this member stops probing \
                 (the other members of its site have taken its targets) until it can again",
                human(lease)
            );
            self.drop_share();
        }
        if self
            .member
            .as_ref()
            .and_then(|m| m.lead.as_ref())
            .is_some_and(|l| now >= l.lead.valid_until)
        {
            self.depose("its lease ran out by this host's clock before it could be renewed");
        }
    }

    /// Recomputes this member's share of the targets from the live members of its site.
    fn reshare(&mut self, members: &[MemberRow]) {
        let Some(m) = self.member.as_ref() else { return };
        let settings = &m.identity.settings;
        let alive = members_alive(members, settings.lease);
        let ids = site_members(&alive, &settings.site);
        if !ids.contains(&m.identity.me) {
            self.drop_share();
            return;
        }
        if m.share.as_ref() == Some(&ids) && m.deferred == 0 {
            return;
        }
        let me = m.identity.me.clone();
        // Who owned what before this view: the last share, or for a member (re)joining, the
        // others, who still probe until their next beat shows them this member.
        let before: Vec<MemberId> = match &m.share {
            Some(share) => share.clone(),
            None => ids.iter().filter(|id| **id != me).cloned().collect(),
        };
        let mut gained = Vec::new();
        let mut lost = Vec::new();
        let mut owned = 0usize;
        let mut deferred = 0usize;
        for (index, slot) in self.slots.iter().enumerate() {
            let claim = claim(&slot.target.name, &me, &before, &ids);
            deferred += usize::from(claim == Claim::NextBeat);
            let mine = claim == Claim::Mine;
            owned += usize::from(mine);
            let was = m.owned.set(index, mine);
            if mine && !was {
                gained.push(index);
            } else if was && !mine {
                lost.push(index);
            }
        }
        self.disown(&lost);
        let Some(m) = self.member.as_mut() else { return };
        m.deferred = deferred;
        if deferred > 0 {
            log::info!(
                "taking over targets={deferred} at the next beat, once their owners have seen \
                 this member (no target is probed twice)"
            );
        }
        m.adopting.retain(|slot, _| m.owned.is_mine(*slot));
        for slot in &gained {
            m.adopting.insert(*slot, Adoption { waiting: VecDeque::new(), asked: false });
        }
        log::info!(
            "owning targets={owned} of {} site={} members={}",
            self.slots.len(),
            m.identity.settings.site,
            ids.len()
        );
        m.share = Some(ids);
        self.metrics.set_owned_targets(owned);
        self.ask_adoptions();
    }

    /// Asks the history of every slot being adopted that is not asked yet.
    fn ask_adoptions(&mut self) {
        let Some(m) = self.member.as_mut() else { return };
        let mut slots: Vec<usize> =
            m.adopting.iter_mut().filter(|(_, a)| !a.asked).map(|(s, _)| *s).collect();
        if slots.is_empty() {
            return;
        }
        slots.sort_unstable();
        for slot in &slots {
            if let Some(a) = m.adopting.get_mut(slot) {
                a.asked = true;
            }
        }
        let pairs = slots
            .iter()
            .map(|&s| (self.slots[s].target.name.clone(), self.slots[s].region.name.clone()))
            .collect();
        let from = self.clock.now().minus(crate::web::status_page::HISTORY_SPAN);
        self.ask(Job::Adopt { slots, pairs, from });
    }

    /// Tells the recorder that `slots` are another member's now.
    fn disown(&mut self, slots: &[usize]) {
        if slots.is_empty() {
            return;
        }
        let pairs = slots
            .iter()
            .map(|&s| (self.slots[s].target.name.clone(), self.slots[s].region.name.clone()))
            .collect();
        self.ask(Job::Disown { pairs });
    }

    /// Owns nothing any more.
    fn drop_share(&mut self) {
        let Some(m) = self.member.as_mut() else { return };
        let lost: Vec<usize> = (0..m.owned.len()).filter(|&i| m.owned.set(i, false)).collect();
        let had = lost.len();
        m.adopting.clear();
        if m.share.take().is_some() || had > 0 {
            log::warn!(
                "owning targets=0 of {} site={} (not a live member of its site)",
                self.slots.len(),
                m.identity.settings.site
            );
        }
        self.metrics.set_owned_targets(0);
        self.disown(&lost);
    }

    /// The recorder read the histories of adopted slots: resume their detectors from the
    /// site's last row and decide what waited.
    pub(super) fn adopted(&mut self, slots: Vec<usize>, histories: Option<Vec<Vec<StateRow>>>) {
        let Some(histories) = histories else {
            if let Some(m) = self.member.as_mut() {
                for slot in &slots {
                    if let Some(a) = m.adopting.get_mut(slot) {
                        a.asked = false;
                    }
                }
            }
            return;
        };
        let now = self.clock.now();
        for (slot, history) in slots.into_iter().zip(histories) {
            let Some(adoption) = self.member.as_mut().and_then(|m| m.adopting.remove(&slot)) else {
                continue;
            };
            // A site watch never reminds (reminders are the leader's, of global outages).
            let (watch, changes) = super::resume_slot(&self.slots[slot], &history, None, now);
            let since = changes.last().map(|c| c.at);
            self.watches[slot] = watch;
            if let Some(row) = self.snapshot.lock().get_mut(slot) {
                row.changes = changes;
            }
            for (outcome, at) in adoption.waiting {
                if since.is_none_or(|s| at >= s) {
                    self.observe(slot, &outcome, at, super::Logged::Not);
                }
            }
        }
    }

    /// A site transition: recorded as the site's row, logged, never mailed.
    pub(super) fn site_changed(&mut self, index: usize, slot: &Slot, transition: &Transition) {
        slot.metrics.transition(transition);
        let now = self.clock.now();
        self.remember(index, Change { at: transition.since, health: transition.to }, now);
        let (name, site) = (&slot.target.name, &slot.region.name);
        match transition.to {
            Health::Down => log::warn!(
                "SITE DOWN target={name} site={site} since={} reason={:?}",
                transition.since,
                transition.reasons.first().map_or("", String::as_str)
            ),
            Health::Up => {
                log::info!("SITE UP target={name} site={site} since={}", transition.since)
            }
        }
        let row = NewState {
            key: new_key(),
            timestamp: transition.since,
            healthy: transition.to.is_up(),
            target: name.clone(),
            region: site.clone(),
            reason: transition.reasons.first().cloned(),
            maintenance: None,
            held: false,
        };
        self.ask(Job::Write(Write::Commit(Commit { state: Some(row), ..Commit::default() })));
    }

    /// Takes, keeps or loses the lead as the beat says, then judges as leader.
    fn relead(&mut self, view: &View) {
        let Some(m) = self.member.as_mut() else { return };
        match (view.lead, m.lead.as_mut()) {
            (Some(lead), Some(leading)) if leading.lead.term == lead.term => {
                leading.lead = lead;
            }
            (Some(lead), current) => {
                if current.is_some() {
                    self.depose("a newer term began");
                }
                let Some(m) = self.member.as_mut() else { return };
                log::warn!(
                    "LEADER cluster={} term={} instance={}",
                    m.identity.settings.name,
                    lead.term,
                    m.identity.me
                );
                m.lead = Some(Leading {
                    lead,
                    globals: None,
                    unjudged: None,
                    asked: false,
                    alive: None,
                    lost: HashMap::new(),
                    partial: vec![Vec::new(); self.slots.len()],
                });
                self.metrics.set_cluster_lead(Some(lead.term));
            }
            (None, Some(_)) => {
                let holder = view.leader.as_ref().map_or("nobody".into(), |(id, term)| {
                    format!("instance {id} under term {term}")
                });
                self.depose(&format!("the lease is held by {holder}"));
            }
            (None, None) => {}
        }
        if let Some((_, term)) = &view.leader {
            self.metrics.set_cluster_term(*term);
        }
        let Some(leading) = self.member.as_mut().and_then(|m| m.lead.as_mut()) else { return };
        if leading.globals.is_none() {
            if let Some(sites) = &view.sites {
                leading.unjudged = Some((view.members.clone(), sites.clone()));
            }
            if !leading.asked {
                leading.asked = true;
                let term = leading.lead.term;
                let targets = self.slots.iter().map(|s| s.target.name.clone()).collect();
                let from = self.clock.now().minus(crate::web::status_page::HISTORY_SPAN);
                self.ask(Job::Lead { term, targets, from });
            }
            return;
        }
        if let Some(sites) = &view.sites {
            self.judge(&view.members, sites);
        }
    }

    /// No longer leader: nothing more is sent from here; the next leader resumes the outbox.
    fn depose(&mut self, why: &str) {
        let Some(m) = self.member.as_mut() else { return };
        let Some(leading) = m.lead.take() else { return };
        log::warn!(
            "NOT LEADER cluster={} term={}: {why}; this member sends nothing more",
            m.identity.settings.name,
            leading.lead.term
        );
        self.outbox = Outbox::default();
        self.metrics.set_pending_notifications(0);
        self.metrics.set_cluster_lead(None);
    }

    /// The recorder read the global state and the outbox for `term`.
    pub(super) fn leading(
        &mut self,
        term: u64,
        read: Option<(Vec<Vec<StateRow>>, Vec<OutboxEntry>)>,
    ) {
        let Some(leading) = self.member.as_mut().and_then(|m| m.lead.as_mut()) else { return };
        if leading.lead.term != term {
            return;
        }
        let Some((histories, pending)) = read else {
            leading.asked = false;
            return;
        };
        let now = self.clock.now();
        let slots = Arc::clone(&self.slots);
        let globals = histories
            .into_iter()
            .zip(slots.iter())
            .map(|(rows, slot)| {
                let changes: Vec<Change> = rows.iter().map(StateRow::change).collect();
                let last = changes.last().copied();
                // Reminders that fell due before this leader began are not sent late.
                let reminded = match last {
                    Some(Change { health: Health::Down, at }) => {
                        reminder_due(slot.target.remind, at, now, 0).unwrap_or(0)
                    }
                    _ => 0,
                };
                Global {
                    held: held_from(&rows),
                    reminded,
                    health: last.map(|c| match c.health {
                        Health::Up => GlobalHealth::Up,
                        Health::Down => GlobalHealth::Down { sites_down: Vec::new() },
                    }),
                    since: last.map(|c| c.at),
                    changes,
                }
            })
            .collect();
        leading.globals = Some(globals);
        if !pending.is_empty() {
            log::warn!("resuming {} undelivered notification(s) as leader", pending.len());
        }
        self.outbox.resume(pending, Instant::now());
        self.metrics.set_pending_notifications(self.outbox.len());
        let unjudged =
            self.member.as_mut().and_then(|m| m.lead.as_mut()).and_then(|l| l.unjudged.take());
        if let Some((members, sites)) = unjudged {
            self.judge(&members, &sites);
        }
    }

    /// A fenced write was refused: the term is over (or the database away). Its notifications
    /// must not go out; whoever leads next decides again from the database.
    pub(super) fn fenced(&mut self, term: u64, keys: &[String]) {
        for key in keys {
            self.outbox.delivered(key);
        }
        let ours =
            self.member.as_ref().and_then(|m| m.lead.as_ref()).is_some_and(|l| l.lead.term == term);
        if ours {
            self.depose("a write under its term was refused by the database");
        }
    }

    /// As leader: the global verdict of every target from its sites, and the members' news.
    fn judge(&mut self, members: &[MemberRow], sites: &[SiteState]) {
        let Some(m) = self.member.as_ref() else { return };
        let settings = m.identity.settings.clone();
        let alive: Vec<&MemberRow> = members_alive(members, settings.lease);
        let mut known: Vec<&str> = members.iter().map(|r| r.site.as_str()).collect();
        known.sort_unstable();
        known.dedup();
        let live = |site: &str| alive.iter().any(|r| r.site == site);
        let by_pair: HashMap<(&str, &str), &SiteState> =
            sites.iter().map(|s| ((s.target.as_str(), s.site.as_str()), s)).collect();
        let now = self.clock.now();
        for index in 0..self.slots.len() {
            let target = self.slots[index].target.name.clone();
            let cover = maintenance::covering(&target, now, &self.windows, &self.silences);
            let views: Vec<(&str, SiteView)> = known
                .iter()
                .map(|&site| {
                    let view = if live(site) {
                        SiteView::Live(by_pair.get(&(target.as_str(), site)).map(|s| {
                            if s.healthy {
                                Health::Up
                            } else {
                                Health::Down
                            }
                        }))
                    } else {
                        SiteView::Gone
                    };
                    (site, view)
                })
                .collect();
            let verdict = quorum::judge(&views, settings.quorum);
            let down: Vec<String> = views
                .iter()
                .filter(|(_, v)| *v == SiteView::Live(Some(Health::Down)))
                .map(|(s, _)| (*s).to_owned())
                .collect();
            let Some(leading) = self.member.as_mut().and_then(|m| m.lead.as_mut()) else { return };
            let Some(globals) = leading.globals.as_mut() else { return };
            if verdict.global == Some(GlobalHealth::Up)
                && !down.is_empty()
                && leading.partial[index] != down
            {
                log::warn!(
                    "seen down target={target} sites_down={} quorum={} live_sites={}: not an outage",
                    down.join(","),
                    verdict.quorum,
                    verdict.live
                );
            }
            leading.partial[index] = down.clone();
            if cover.is_none() && globals[index].held.is_some() {
                let term = leading.lead.term;
                let sites = Sites {
                    down: down.clone(),
                    quorum: verdict.quorum,
                    live: verdict.live,
                    missing: verdict.missing.clone(),
                };
                self.global_maintenance_over(index, term, &settings.name, &sites, now);
            }
            let Some(leading) = self.member.as_mut().and_then(|m| m.lead.as_mut()) else { return };
            let Some(globals) = leading.globals.as_mut() else { return };
            let global = &mut globals[index];
            let Some(change) = quorum::transition(global.health.as_ref(), verdict.global.as_ref())
            else {
                let remind = self.slots[index].target.remind;
                let down_since = match (&global.health, global.since) {
                    (Some(GlobalHealth::Down { .. }), Some(since)) => since,
                    _ => continue,
                };
                let Some(period) = reminder_due(remind, down_since, now, global.reminded) else {
                    continue;
                };
                if cover.is_some() {
                    // In maintenance: the period counts as reminded, nothing is sent.
                    global.reminded = period;
                    continue;
                }
                global.reminded = period;
                let term = leading.lead.term;
                let down_for = now.since(down_since);
                log::warn!("STILL DOWN target={target} down_for={}", human(down_for));
                let reason = (!down.is_empty()).then(|| format!("down from {}", down.join(", ")));
                let email = message::compose_reminder(&message::Reminder {
                    target: &target,
                    region: None,
                    since: down_since,
                    down_for,
                    reason: reason.as_deref(),
                    now,
                });
                // Derived: a leader that takes over mid-period writes the same reminder.
                let key = derived_key(&[
                    "remind",
                    &settings.name,
                    &target,
                    &down_since.to_string(),
                    &period.to_string(),
                ]);
                let slots = Arc::clone(&self.slots);
                let to = self.global_recipients(&slots[index]);
                self.post_fenced(term, &target, GLOBAL, to, None, email, Some(key), None);
                continue;
            };
            let since = change_since(&change, &target, &verdict, sites, global.since, now);
            let from = global.health.as_ref().map(|h| match h {
                GlobalHealth::Up => Health::Up,
                GlobalHealth::Down { .. } => Health::Down,
            });
            let ended = global.since.map(|s| since.since(s));
            global.health = verdict.global.clone();
            global.since = Some(since);
            global.reminded = 0;
            let to = if matches!(change, GlobalTransition::Outage { .. }) {
                Health::Down
            } else {
                Health::Up
            };
            global.changes.push(Change { at: since, health: to });
            let keep = global.changes.len().saturating_sub(MAX_CHANGES);
            global.changes.drain(..keep);
            let changes = global.changes.clone();
            let term = leading.lead.term;
            let sites_down = match &change {
                GlobalTransition::Outage { sites_down } => sites_down.clone(),
                _ => Vec::new(),
            };
            let reason =
                (!sites_down.is_empty()).then(|| format!("down from {}", sites_down.join(", ")));
            let row = NewState {
                key: new_key(),
                timestamp: since,
                healthy: to.is_up(),
                target: target.clone(),
                region: GLOBAL.to_owned(),
                reason: reason.clone(),
                maintenance: cover.as_ref().map(|c| c.why.clone()),
                held: cover.is_some() && change.notifies(),
            };
            if let (Some(cover), true) = (&cover, row.held) {
                let held = global.held.get_or_insert_with(|| Held {
                    before: from,
                    why: cover.why.clone(),
                    during: Vec::new(),
                });
                held.during.push((since, to, reason.clone()));
            }
            let transition = Transition { from, to, since, reasons: reason.into_iter().collect() };
            match &change {
                GlobalTransition::Outage { sites_down } => log::error!(
                    "OUTAGE target={target} sites_down={} quorum={} live_sites={} since={since}",
                    sites_down.join(","),
                    verdict.quorum,
                    verdict.live
                ),
                GlobalTransition::Recovery => log::info!(
                    "RECOVERED target={target} at={since} down_for={}",
                    ended.map_or_else(|| "unknown".into(), human)
                ),
                GlobalTransition::FirstUp => {
                    log::info!("UP target={target} since={since} (first global state, recorded)")
                }
            }
            let slots = Arc::clone(&self.slots);
            let slot = &slots[index];
            if let (Some(cover), true) = (&cover, row.held) {
                log::warn!(
                    "notification held back target={target} region={GLOBAL}: in maintenance \
                     ({cover}); one summary when it is over, if the state is not as before"
                );
            }
            if !change.notifies() || row.held {
                let commit = Commit { state: Some(row), ..Commit::default() };
                self.ask_fenced(term, commit);
                continue;
            }
            let summary = history::summarize(&changes, now);
            let email = message::compose(&Notice {
                target: &target,
                region: None,
                transition: &transition,
                ended,
                history: &summary,
                all_regions_down: None,
                sites: Some(&Sites {
                    down: sites_down,
                    quorum: verdict.quorum,
                    live: verdict.live,
                    missing: verdict.missing.clone(),
                }),
                now,
            });
            let to = self.global_recipients(slot);
            self.post_fenced(term, &target, GLOBAL, to, Some(row), email, None, None);
        }
        self.members_news(members, &settings.name, settings.lease, now);
    }

    /// As leader: mails members that stopped reporting and those back.
    fn members_news(
        &mut self,
        members: &[MemberRow],
        cluster: &str,
        lease: std::time::Duration,
        now: Timestamp,
    ) {
        let Some(leading) = self.member.as_mut().and_then(|m| m.lead.as_mut()) else { return };
        let term = leading.lead.term;
        let alive_now: BTreeMap<MemberId, String> = members
            .iter()
            .filter(|r| r.age < lease)
            .map(|r| (r.id.clone(), r.site.clone()))
            .collect();
        let mut sites: Vec<&str> = members.iter().map(|r| r.site.as_str()).collect();
        sites.sort_unstable();
        sites.dedup();
        let missing: Vec<String> = sites
            .iter()
            .filter(|s| !alive_now.values().any(|a| a == *s))
            .map(|s| (*s).to_owned())
            .collect();
        let news = member_news(leading.alive.as_ref(), &mut leading.lost, members, lease, cluster);
        for id in alive_now.keys() {
            if leading.alive.as_ref().is_some_and(|a| !a.contains_key(id)) {
                log::info!("member joined cluster={cluster} instance={id}");
            }
        }
        leading.alive = Some(alive_now.clone());
        for (row, back, key) in news {
            let site_members = alive_now.values().filter(|s| **s == row.site).count();
            let instance = row.id.as_str();
            if back {
                log::warn!("MEMBER BACK cluster={cluster} instance={instance} site={}", row.site);
            } else {
                log::error!(
                    "MEMBER LOST cluster={cluster} instance={instance} site={} last_seen={}",
                    row.site,
                    row.seen_at
                );
            }
            let email = message::compose_member(&MemberNotice {
                cluster,
                instance,
                site: &row.site,
                last_seen: row.seen_at,
                back,
                site_members,
                missing_sites: &missing,
                now,
            });
            let emails =
                if self.recipients.mail { self.recipients.global.join(",") } else { String::new() };
            let to = To { emails, channels: self.recipients.channels.clone() };
            let target = format!("cluster {cluster}");
            self.post_fenced(term, &target, &row.site, to, None, email, Some(key), None);
        }
    }

    /// Writes `email` (with the global row it announces) fenced by `term`, and queues it; it
    /// goes out only once the write succeeded.
    #[allow(clippy::too_many_arguments)]
    fn post_fenced(
        &mut self,
        term: u64,
        target: &str,
        region: &str,
        to: To,
        state: Option<NewState>,
        email: Email,
        key: Option<String>,
        release: Option<(String, String)>,
    ) {
        let notification = Notification {
            key: key.unwrap_or_else(new_key),
            target: target.to_owned(),
            region: region.to_owned(),
            recipients: to.emails,
            subject: email.subject,
            text: email.text,
            html: email.html,
            created_at: self.clock.now(),
        };
        let names: Vec<&str> = to.channels.iter().map(String::as_str).collect();
        let rows = channel::fan_out(notification, &email.event, &names, &self.recipients.defined);
        let instant = Instant::now();
        self.ask_fenced(term, Commit { state, notifications: rows.clone(), release });
        for row in rows {
            self.outbox.push(row, instant);
        }
        self.metrics.set_pending_notifications(self.outbox.len());
    }

    /// As leader: the maintenance that held back the global notifications of the target of
    /// slot `index` is over. As [`StateOwner::maintenance_over`] for one instance: a summary if
    /// the global state is not as before it, none if it is; the held rows are released in the
    /// same fenced commit, so the next leader knows whether one is still owed.
    fn global_maintenance_over(
        &mut self,
        index: usize,
        term: u64,
        cluster: &str,
        sites: &Sites,
        now: Timestamp,
    ) {
        let Some(leading) = self.member.as_mut().and_then(|m| m.lead.as_mut()) else { return };
        let Some(globals) = leading.globals.as_mut() else { return };
        let global = &mut globals[index];
        let Some(held) = global.held.take() else { return };
        let target = self.slots[index].target.name.clone();
        let release = Some((target.clone(), GLOBAL.to_owned()));
        let current = global.health.as_ref().map(|h| match h {
            GlobalHealth::Up => Health::Up,
            GlobalHealth::Down { .. } => Health::Down,
        });
        let changes = global.changes.clone();
        let Some((transition, ended)) = held.over(current, &changes, now, &target, GLOBAL) else {
            self.ask_fenced(term, Commit { release, ..Commit::default() });
            return;
        };
        let history = history::summarize(&changes, now);
        let email = message::compose_after_maintenance(
            &Notice {
                target: &target,
                region: None,
                transition: &transition,
                ended,
                history: &history,
                all_regions_down: None,
                sites: Some(sites),
                now,
            },
            &message::AfterMaintenance { why: &held.why, during: &held.during },
        );
        // Derived: a leader that takes over before this one's commit is known writes the same.
        let first = held.during.first().map_or(transition.since, |(at, _, _)| *at);
        let key = derived_key(&["after-maintenance", cluster, &target, &first.to_string()]);
        let slots = Arc::clone(&self.slots);
        let to = self.global_recipients(&slots[index]);
        self.post_fenced(term, &target, GLOBAL, to, None, email, Some(key), release);
    }

    /// Who gets a global notification of `slot`'s target: the global recipients and channels
    /// and the target's. Not a site's: the notification is about every site, and the leader
    /// knows only its own site's.
    fn global_recipients(&self, slot: &Slot) -> To {
        let mut emails: Vec<&String> = Vec::new();
        if self.recipients.mail {
            for r in self.recipients.global.iter().chain(&slot.target.recipients) {
                if !emails.iter().any(|seen| seen.eq_ignore_ascii_case(r)) {
                    emails.push(r);
                }
            }
        }
        To {
            emails: emails.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
            channels: self
                .recipients
                .channels
                .iter()
                .chain(&slot.target.channels)
                .cloned()
                .collect(),
        }
    }

    fn ask_fenced(&mut self, term: u64, commit: Commit) {
        let Some(m) = self.member.as_ref() else { return };
        let job = Job::Fenced {
            cluster: m.identity.settings.name.clone(),
            me: m.identity.me.clone(),
            term,
            commit,
        };
        self.ask(job);
    }
}

/// PURE: what the leader announces about members from one view: `(row, back, key)` for each
/// member that stopped reporting (`back` false) or reports again (`back` true). `previous` is
/// who was alive at the last view (`None` for a new leader: then every expired member not yet
/// announced is news, and the derived key makes an announcement another leader made a no-op);
/// `lost` is who this leader announced lost, updated here. A member whose row is gone left
/// cleanly and is not news.
fn member_news(
    previous: Option<&BTreeMap<MemberId, String>>,
    lost: &mut HashMap<MemberId, Timestamp>,
    members: &[MemberRow],
    lease: std::time::Duration,
    cluster: &str,
) -> Vec<(MemberRow, bool, String)> {
    let mut news = Vec::new();
    for row in members {
        let was_alive = previous.is_none_or(|alive| alive.contains_key(&row.id));
        let is_alive = row.age < lease;
        if was_alive && !is_alive && !lost.contains_key(&row.id) {
            lost.insert(row.id.clone(), row.seen_at);
            let seen = row.seen_at.to_string();
            let key = derived_key(&["member-lost", cluster, row.id.as_str(), &seen]);
            news.push((row.clone(), false, key));
        } else if is_alive {
            if let Some(lost_at) = lost.remove(&row.id) {
                let at = lost_at.to_string();
                let key = derived_key(&["member-back", cluster, row.id.as_str(), &at]);
                news.push((row.clone(), true, key));
            }
        }
    }
    news
}

/// PURE: when a global change happened, from the sites' rows: an outage when the quorum-th site
/// went down; a recovery when the live sites still down fell below the quorum, i.e. at the
/// recovery (since the outage began at `outage_start`) that left fewer than `quorum` down.
fn change_since(
    change: &GlobalTransition,
    target: &str,
    verdict: &quorum::Verdict,
    sites: &[SiteState],
    outage_start: Option<Timestamp>,
    now: Timestamp,
) -> Timestamp {
    let rows = sites.iter().filter(|s| s.target == target);
    match change {
        GlobalTransition::Outage { sites_down } => {
            let mut down: Vec<Timestamp> = rows
                .filter(|s| !s.healthy && sites_down.contains(&s.site))
                .map(|s| s.since)
                .collect();
            down.sort_unstable();
            down.get(verdict.quorum.saturating_sub(1)).or(down.last()).copied().unwrap_or(now)
        }
        GlobalTransition::Recovery => {
            let live: Vec<&SiteState> =
                rows.filter(|s| !verdict.missing.contains(&s.site)).collect();
            let still_down = live.iter().filter(|s| !s.healthy).count();
            let mut recovered: Vec<Timestamp> = live
                .iter()
                .filter(|s| s.healthy && outage_start.is_none_or(|o| s.since >= o))
                .map(|s| s.since)
                .collect();
            recovered.sort_unstable();
            // Down before any recovery: still_down + recovered; after the j-th (1-based):
            // that minus j, below the quorum from j = still_down + recovered + 1 - quorum.
            let j = (still_down + recovered.len() + 1).saturating_sub(verdict.quorum).max(1);
            recovered.get(j - 1).or(recovered.last()).copied().unwrap_or(now)
        }
        GlobalTransition::FirstUp => {
            rows.filter(|s| s.healthy).map(|s| s.since).max().unwrap_or(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reminder_is_due_once_per_whole_period_of_the_outage() {
        let t = |s: i64| Timestamp::from_millis(s * 1000);
        let every = Some(std::time::Duration::from_secs(60));
        for (now, reminded, due) in
            [(59, 0, None), (60, 0, Some(1)), (119, 1, None), (185, 1, Some(3)), (185, 3, None)]
        {
            assert_eq!(reminder_due(every, t(0), t(now), reminded), due, "{now} {reminded}");
        }
        assert_eq!(reminder_due(None, t(0), t(10_000), 0), None, "off");
    }

    #[test]
    fn members_are_announced_once_when_they_stop_and_once_when_they_return() {
        let lease = std::time::Duration::from_secs(15);
        let row = |id: &str, age: u64, seen: i64| MemberRow {
            id: MemberId::new(id),
            site: "eu".into(),
            version: "0.1.0".into(),
            started_at: Timestamp::from_millis(0),
            seen_at: Timestamp::from_millis(seen),
            age: std::time::Duration::from_secs(age),
        };
        let alive = |ids: &[&str]| -> BTreeMap<MemberId, String> {
            ids.iter().map(|id| (MemberId::new(*id), "eu".to_string())).collect()
        };
        let said = |news: &[(MemberRow, bool, String)]| -> Vec<(String, bool)> {
            news.iter().map(|(r, back, _)| (r.id.to_string(), *back)).collect()
        };
        let mut lost = HashMap::new();
        // A new leader: the expired one is news, the live one is not.
        let first = member_news(None, &mut lost, &[row("a", 1, 0), row("b", 20, 5)], lease, "p");
        assert_eq!(said(&first), [("b".into(), false)]);
        // The same view again, then a live member expiring, then a return.
        let prev = alive(&["a"]);
        let rows = [row("a", 1, 0), row("b", 21, 5)];
        assert!(member_news(Some(&prev), &mut lost, &rows, lease, "p").is_empty(), "once");
        let rows = [row("a", 16, 9), row("b", 22, 5)];
        assert_eq!(
            said(&member_news(Some(&prev), &mut lost, &rows, lease, "p")),
            [("a".into(), false)]
        );
        let rows = [row("a", 17, 9), row("b", 1, 30)];
        let back = member_news(Some(&alive(&[])), &mut lost, &rows, lease, "p");
        assert_eq!(said(&back), [("b".into(), true)]);
        // A member that left cleanly has no row: not news. A new member alive: not news.
        assert!(
            member_news(Some(&alive(&["b"])), &mut lost, &[row("c", 1, 40)], lease, "p").is_empty()
        );
        // Keys: the same loss gives the same key to any leader; another loss another key.
        let mut other = HashMap::new();
        let again = member_news(None, &mut other, &[row("b", 20, 5)], lease, "p");
        assert_eq!(again[0].2, first[0].2);
        let later = member_news(None, &mut HashMap::new(), &[row("b", 20, 6)], lease, "p");
        assert_ne!(later[0].2, first[0].2);
    }

    #[test]
    fn a_global_change_is_dated_by_the_site_that_made_the_quorum() {
        let t = Timestamp::from_millis;
        let state = |site: &str, healthy: bool, ms: i64| SiteState {
            target: "x".into(),
            site: site.into(),
            healthy,
            since: t(ms),
        };
        let verdict = |quorum: usize| quorum::Verdict {
            global: None,
            quorum,
            live: 3,
            missing: Vec::new(),
            unknown: Vec::new(),
        };
        let rows = [state("eu", false, 10), state("us", false, 20), state("ap", true, 5)];
        let outage = GlobalTransition::Outage { sites_down: vec!["eu".into(), "us".into()] };
        for (quorum, expected) in [(1, 10), (2, 20), (3, 20)] {
            assert_eq!(
                change_since(&outage, "x", &verdict(quorum), &rows, None, t(99)),
                t(expected)
            );
        }
        // Recovered: eu at 30, us at 40, ap still down; the outage began at 20 (`old` at 5 is
        // a recovery from before it).
        let rows = [state("eu", true, 30), state("us", true, 40), state("ap", false, 35)];
        let recovery = |quorum: usize, rows: &[SiteState]| {
            change_since(
                &GlobalTransition::Recovery,
                "x",
                &verdict(quorum),
                rows,
                Some(t(20)),
                t(99),
            )
        };
        assert_eq!(recovery(2, &rows), t(40), "2 of 3: down 3, 2 after eu, 1 after us");
        assert_eq!(recovery(3, &rows), t(30), "3 of 3: over when eu came back");
        let both = [state("eu", true, 30), state("us", true, 40)];
        assert_eq!(recovery(2, &both), t(30), "2 of 2: over when the first came back");
        assert_eq!(recovery(1, &both), t(40), "1 of 2: over when the last came back");
        let old = [state("eu", true, 5), state("us", true, 40)];
        assert_eq!(recovery(1, &old), t(40));
        let none: [SiteState; 0] = [];
        assert_eq!(recovery(1, &none), t(99), "no rows: now");
    }

    #[test]
    fn a_target_moves_at_once_from_a_gone_member_and_a_beat_later_from_a_live_one() {
        let ids =
            |names: &[&str]| -> Vec<MemberId> { names.iter().map(|n| MemberId::new(*n)).collect() };
        let (a, b, c) = (MemberId::new("a"), MemberId::new("b"), MemberId::new("c"));
        // Targets and who owns them among a, b, c and among a, c.
        let targets: Vec<String> = (0..200).map(|i| format!("http://t/{i}")).collect();
        let owner = |t: &str, of: &[&str]| assign::owner(t, &ids(of)).cloned();
        let moving = targets
            .iter()
            .find(|t| {
                owner(t, &["a", "b", "c"]) == Some(b.clone())
                    && owner(t, &["a", "c"]) == Some(a.clone())
            })
            .expect("some target of b falls to a");
        let kept = targets
            .iter()
            .find(|t| owner(t, &["a", "b", "c"]) == Some(a.clone()))
            .expect("some target of a");
        for (target, me, before, now, expected, why) in [
            (moving, &a, &["a", "b", "c"][..], &["a", "c"][..], Claim::Mine, "b is gone: at once"),
            (moving, &a, &["a", "c"], &["a", "b", "c"], Claim::NotMine, "b joined: it is b's"),
            (moving, &b, &["a", "c"], &["a", "b", "c"], Claim::NextBeat, "a still probes it"),
            (moving, &b, &["a", "b", "c"], &["a", "b", "c"], Claim::Mine, "a beat later"),
            (kept, &a, &["a", "b", "c"], &["a", "b", "c"], Claim::Mine, "unchanged"),
            (kept, &a, &[], &["a", "b", "c"], Claim::Mine, "nobody else had it"),
            (kept, &c, &["a", "b", "c"], &["a", "b", "c"], Claim::NotMine, "a's"),
        ] {
            assert_eq!(claim(target, me, &ids(before), &ids(now)), expected, "{why}");
        }
        let _ = c;
    }

    #[test]
    fn derived_keys_are_stable_hex_and_tell_their_parts_apart() {
        let a = derived_key(&["member-lost", "prod", "m1", "2026-12-01 10:00:00.000"]);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, derived_key(&["member-lost", "prod", "m1", "2026-12-01 10:00:00.000"]));
        assert_ne!(a, derived_key(&["member-lost", "prod", "m1", "2026-12-01 10:00:05.000"]));
        assert_ne!(derived_key(&["ab", "c"]), derived_key(&["a", "bc"]));
    }
}
