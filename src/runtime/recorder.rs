//! The recorder: the one thread that talks to the database.
//!
//! Why a thread of its own: a database that hangs (accepts, then never answers) costs every
//! call its full timeout, 5–10 s, and a reconnect more. Were those calls made by the state
//! owner, every decision — an outage, its email — would wait for them. So the state owner only
//! *sends* its writes here, in order, and goes on deciding and mailing from memory; the
//! recorder applies them through the [`Ledger`] (in order, kept in memory while the database is
//! away, never twice), and answers the few questions the state owner asks: may this instance
//! take the database, and what is recorded (at start), and which notifications were re-queued
//! by hand (every minute). It also keeps this instance's heartbeat, and says when the monitor
//! must stop: another instance took the database over, or the database file vanished.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::cluster::MemberId;
use crate::config::cluster::GLOBAL;
use crate::latency::{Point, Span};
use crate::runtime::ledger::{Ledger, Unavailable, Write};
use crate::runtime::state::Event;
use crate::store::{Claim, Commit, Holder, Notification, OutboxEntry, Silence, StateRow};
use crate::timestamp::Timestamp;

/// How often the holder refreshes its heartbeat in the database.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A holder whose heartbeat is this old is presumed dead, and a standby takes over.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// What the state owner asks of the recorder.
#[derive(Debug)]
pub enum Job {
    /// Apply this write (in order with every other).
    Write(Write),
    /// Take the database for this instance; if granted, read every pair's history since
    /// `from`, the pending notifications and the silences not ended at `at`.
    Resume { pairs: Vec<(String, String)>, from: Timestamp, at: Timestamp },
    /// Read the pending notifications (to find the re-queued ones).
    Rescan,
    /// Read the silences not ended by `now` (`api-monitor silence` writes them).
    Silences { now: Timestamp },
    /// Cluster mode: read the history of `pairs` (target, site), which this member has just
    /// taken over as `slots`, since `from`.
    Adopt { slots: Vec<usize>, pairs: Vec<(String, String)>, from: Timestamp },
    /// Cluster mode: this member leads under `term`; read the global history of `targets`
    /// since `from` and the notifications still to deliver.
    Lead { term: u64, targets: Vec<String>, from: Timestamp },
    /// Cluster mode: another member probes `pairs` (target, site) now; drop their unwritten
    /// site rows ([`Ledger::disown`]).
    Disown { pairs: Vec<(String, String)> },
    /// Cluster mode: write a global transition (or a member notice) only while `me` holds
    /// `term` ([`Ledger::commit_fenced`]).
    Fenced { cluster: String, me: MemberId, term: u64, commit: Commit },
    /// Write what can be written, let go of the database and end.
    Stop,
    /// Stop for a reload: return the ledger — its connection, the database lock and every
    /// write not yet in the database — for the next runtime, instead of letting go.
    Handover,
}

/// The recorder's answers, delivered as [`Event::Recorder`].
#[derive(Debug)]
pub enum Answer {
    /// The database is this instance's: each pair's recorded history (in the order asked) and
    /// the notifications still to deliver.
    /// And each pair's last hour of latency, as sparkline points.
    Resumed {
        histories: Vec<Vec<StateRow>>,
        pending: Vec<OutboxEntry>,
        silences: Vec<Silence>,
        latency: Vec<Vec<Point>>,
    },
    /// The silences not ended yet.
    Silences(Vec<Silence>),
    /// Another instance holds the database.
    Standby { by: Holder, heartbeat_age: Duration },
    /// The database cannot answer yet.
    Unavailable,
    /// These notifications are in the database (or, with the database away, in the ledger's
    /// memory): they may be delivered.
    Written(Vec<String>),
    /// The pending notifications, for [`Job::Rescan`].
    Pending(Vec<OutboxEntry>),
    /// [`Job::Adopt`]: the histories in the order asked, `None` when the database is away.
    Adopted { slots: Vec<usize>, histories: Option<Vec<Vec<StateRow>>> },
    /// [`Job::Lead`]: the global histories in the order asked and the pending notifications;
    /// `None` when the database is away.
    Leading { term: u64, read: Option<(Vec<Vec<StateRow>>, Vec<OutboxEntry>)> },
    /// [`Job::Fenced`] wrote nothing: `term` is over (or the database is away). The keys of the
    /// notifications it carried, which must not be delivered.
    Fenced { term: u64, keys: Vec<String> },
    /// The monitor must stop: why.
    Fatal(String),
}

/// Whether `holder` is certainly dead: it ran on this host, in this pid namespace, as another
/// process that no longer exists. (The same pid is a container restarted: not certain.)
pub fn gone(me: &Holder, holder: &Holder) -> bool {
    holder.host == me.host
        && holder.pid != me.pid
        && !std::path::Path::new(&format!("/proc/{}", holder.pid)).exists()
}

/// Runs the recorder until [`Job::Stop`] or until the state owner is gone; returns the
/// notifications it could not save (for the state owner to log in full).
/// How the recorder ended: what it could not save (logged by the state owner), or, at a
/// reload, the ledger for the next runtime.
pub struct Ended {
    pub unsaved: Vec<Notification>,
    pub ledger: Option<Ledger>,
}

pub fn run(mut ledger: Ledger, jobs: &Receiver<Job>, events: &Sender<Event>, me: &Holder) -> Ended {
    let mut next_heartbeat: Option<Instant> = None;
    let mut fatal = false;
    loop {
        let now = Instant::now();
        ledger.maintain(now);
        if let Some(due) = next_heartbeat.filter(|due| now >= *due) {
            next_heartbeat = Some(due.max(now) + HEARTBEAT_EVERY);
            if let Ok(false) = ledger.heartbeat(me, now) {
                fatal = true;
                let _ = events.send(Event::Recorder(Answer::Fatal(
                    "another api-monitor instance took over the database (this one was stopped \
                     or cut off for longer than the heartbeat allows); exiting so that only one \
                     sends notifications"
                        .into(),
                )));
            }
        }
        if let (false, Some(why)) = (fatal, ledger.vanished()) {
            fatal = true;
            let _ = events.send(Event::Recorder(Answer::Fatal(why)));
        }
        let wake = [ledger.next_maintenance(now), next_heartbeat].into_iter().flatten().min();
        let job = match wake {
            Some(at) => jobs.recv_timeout(at.saturating_duration_since(now)),
            None => jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        let answer = match job {
            Ok(Job::Write(write)) => {
                let keys: Vec<String> = match &write {
                    Write::Commit(commit) => {
                        commit.notifications.iter().map(|n| n.key.clone()).collect()
                    }
                    _ => Vec::new(),
                };
                ledger.write(write, now);
                if keys.is_empty() {
                    continue;
                }
                // Written, or kept in memory because the database is away: either way the
                // emails may go now.
                Answer::Written(keys)
            }
            Ok(Job::Resume { pairs, from, at }) => {
                let answer = resume(&mut ledger, me, &pairs, from, at, now);
                if matches!(answer, Answer::Resumed { .. }) {
                    next_heartbeat = Some(now + HEARTBEAT_EVERY);
                }
                answer
            }
            Ok(Job::Rescan) => match ledger.pending(now) {
                Ok(pending) => Answer::Pending(pending),
                Err(Unavailable) => continue,
            },
            Ok(Job::Silences { now: at }) => match ledger.silences(at, now) {
                Ok(silences) => Answer::Silences(silences),
                // The last ones read stay in force until the database answers again.
                Err(Unavailable) => continue,
            },
            Ok(Job::Adopt { slots, pairs, from }) => {
                let histories = pairs
                    .iter()
                    .map(|(target, site)| ledger.history(target, site, from, now))
                    .collect::<Result<Vec<_>, _>>()
                    .ok();
                Answer::Adopted { slots, histories }
            }
            Ok(Job::Lead { term, targets, from }) => {
                let read = targets
                    .iter()
                    .map(|target| ledger.history(target, GLOBAL, from, now))
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|histories| Ok((histories, ledger.pending(now)?)))
                    .ok();
                Answer::Leading { term, read }
            }
            Ok(Job::Disown { pairs }) => {
                let dropped = ledger.disown(&pairs);
                if dropped > 0 {
                    log::warn!(
                        "dropped {dropped} unwritten site row(s) of targets another member probes \
                         now (it records their state)"
                    );
                }
                continue;
            }
            Ok(Job::Fenced { cluster, me: member, term, commit }) => {
                let keys: Vec<String> =
                    commit.notifications.iter().map(|n| n.key.clone()).collect();
                match ledger.commit_fenced(&cluster, &member, term, &commit, now) {
                    Ok(true) => Answer::Written(keys),
                    Ok(false) | Err(Unavailable) => Answer::Fenced { term, keys },
                }
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(Job::Handover) => return Ended { unsaved: Vec::new(), ledger: Some(ledger) },
            Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        };
        if events.send(Event::Recorder(answer)).is_err() {
            break;
        }
    }
    let now = Instant::now();
    let unsaved = ledger.report_leftovers(now);
    if next_heartbeat.is_some() && !fatal && ledger.backlog() == 0 {
        ledger.release(me, now);
    }
    Ended { unsaved, ledger: None }
}

/// [`Job::Resume`]: claim, then read everything resuming needs, or say why not.
fn resume(
    ledger: &mut Ledger,
    me: &Holder,
    pairs: &[(String, String)],
    from: Timestamp,
    at: Timestamp,
    now: Instant,
) -> Answer {
    let dead = |h: &Holder| gone(me, h);
    match ledger.claim(me, STALE_AFTER, &dead, now) {
        Err(Unavailable) => return Answer::Unavailable,
        Ok(Claim::Held { by, heartbeat_age }) => return Answer::Standby { by, heartbeat_age },
        Ok(Claim::Granted) => {}
    }
    let mut histories = Vec::with_capacity(pairs.len());
    for (target, region) in pairs {
        match ledger.history(target, region, from, now) {
            Ok(rows) => histories.push(rows),
            Err(Unavailable) => return Answer::Unavailable,
        }
    }
    let Ok(pending) = ledger.pending(now) else { return Answer::Unavailable };
    // Before anything is decided: a restarted monitor honours the silences at once.
    let Ok(silences) = ledger.silences(at, now) else { return Answer::Unavailable };
    // The sparklines go on where the last run left them (statistics: none if unreadable).
    // Pair by pair, turned into points at once: memory stays that of the points.
    let hour_ago = at.minus(Span::Hour.length());
    let latency = pairs
        .iter()
        .map(|(target, region)| {
            let rows = ledger.latency(Span::Minute, Some((target, region)), hour_ago, at, now);
            let rows = rows.unwrap_or_default();
            rows.iter().filter_map(|r| Point::of(r.start, &r.histogram)).collect()
        })
        .collect();
    Answer::Resumed { histories, pending, silences, latency }
}
