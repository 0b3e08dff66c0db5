//! Cluster mode end to end: several real `api-monitor run --cluster` members on one scratch
//! MariaDB database (each through its own cuttable forwarder), real fake APIs and a real SMTP
//! server, checked against the promise of cluster mode — each target probed once per interval
//! per site, each transition announced once, by the leader only — through failovers (SIGKILL),
//! a frozen leader (SIGSTOP), a member cut from the database, two sites with a quorum, and
//! three thousand targets.
//!
//! MySQL only (cluster mode refuses SQLite, which `sqlite_is_refused_in_cluster_mode` checks).
//! Every member runs with the shortest lease (3 s), a 1 s interval and thresholds of 2, so a
//! failover takes seconds; every wait is on an event with a deadline of many leases, and the
//! only sleeps are the lengths of measurement windows and of the SIGSTOP, never assertions.
//!
//! The heavy test (3000 targets) takes the [`HEAVY`] lock for writing, the others for reading:
//! it runs alone, so its per-target counts are not those of a machine shared with two other
//! clusters.

mod support;

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use support::cluster::{sleep_until, stamped_between, Cluster, Member, CLUSTER_DEADLINE, LEASE};
use support::{run_monitor, sqlite, temp_dir, ConnectProxy, FakeApi, SUPPORT};
use testkit::HealthServer;

/// Serialises the 3000-target test against the others (see the module doc).
static HEAVY: RwLock<()> = RwLock::new(());

/// The turn of an ordinary cluster test: any number of them at once, never with the heavy one.
fn shared_turn() -> RwLockReadGuard<'static, ()> {
    HEAVY.read().unwrap_or_else(|p| p.into_inner())
}

const INTERVAL: Duration = Duration::from_secs(1);

/// Waits until `api` has answered `n` more health probes: time passing as the cluster sees it
/// (and proof that someone still probes), instead of a fixed sleep.
fn wait_probes(api: &FakeApi, n: usize) {
    let start = api.hits.len();
    api.hits.wait_until(&format!("{n} more probes of {}", api.base), |h| h.len() >= start + n);
}

/// Probes `api` answered in the window `[from, from + length)`, after waiting for its end.
fn probes_over(api: &FakeApi, from: Instant, length: Duration) -> usize {
    sleep_until(from + length);
    stamped_between(&api.hits, from, from + length, |h| h.at)
}

/// `(region, healthy)` of every state row of `target`, in order.
fn state_rows(cluster: &Cluster, target: &str) -> Vec<(String, bool)> {
    let sql = format!(
        "SELECT region, healthy FROM state WHERE target = '{target}' ORDER BY `timestamp`, id"
    );
    cluster.query::<(String, i64)>(&sql).into_iter().map(|(r, h)| (r, h != 0)).collect()
}

/// How many state rows of `target` in `region` say down.
fn downs(rows: &[(String, bool)], region: &str) -> usize {
    rows.iter().filter(|(r, healthy)| r == region && !healthy).count()
}

/// The members that logged `notification sent key=KEY`: who delivered that email.
fn senders(cluster: &Cluster, key: &str) -> Vec<usize> {
    let needle = format!("notification sent key={key} ");
    // The sink has the mail before its sender has read the server's answer and logged it:
    // wait for the first sender's line (a loaded machine can take a while in between).
    cluster.eventually(&format!("a member logging {needle}"), CLUSTER_DEADLINE, || {
        let logged: Vec<usize> = (0..cluster.members.len())
            .filter(|&i| cluster.members[i].count_since(0, &needle) > 0)
            .collect();
        Some(logged).filter(|l| !l.is_empty())
    })
}

/// The value of the `label:` line of `mail`'s text (facts are aligned: blanks trimmed).
fn fact(mail: &support::Mail, label: &str) -> Option<String> {
    let text = mail.text();
    let prefix = format!("{label}:");
    text.lines().find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_owned()))
}

/// Whether `mail`'s subject or text names `who`.
fn names(mail: &support::Mail, who: &str) -> bool {
    mail.subject().contains(who) || mail.text().contains(who)
}

#[test]
fn three_members_one_site_one_outage_one_recovery() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_three") else { return };
    let api = FakeApi::start(&[]);
    let url = api.health_url();
    let all: Vec<usize> = (0..3).map(|_| cluster.join("direct", &["--url", &url])).collect();
    let leader = cluster.wait_for_leader(&[]);
    cluster.wait_settled(&all, 1);
    let owners: Vec<&str> = all
        .iter()
        .filter(|&&i| cluster.members[i].owning().is_some_and(|o| o.targets == 1))
        .map(|&i| cluster.members[i].label.as_str())
        .collect();
    assert_eq!(owners.len(), 1, "one member of the site owns the one target: {owners:?}");

    // One probe per interval for the site, not one per member.
    let window = 10 * INTERVAL;
    let probes = probes_over(&api, Instant::now(), window);
    eprintln!("probes over {window:?} with 3 members: {probes}");
    assert!((5..=15).contains(&probes), "about 10 probes in 10 intervals, not 30: {probes}");

    api.set_mode("down");
    let outage = cluster.wait_mails("OUTAGE:", 1, CLUSTER_DEADLINE).remove(0);
    assert_eq!(outage.subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    assert_eq!(outage.to, [SUPPORT]);
    assert_eq!(
        fact(&outage, "Seen down from").as_deref(),
        Some("direct"),
        "the outage names the site that sees it down:\n{}",
        outage.text()
    );
    api.set_mode("ok");
    let recovered = cluster.wait_mails("RECOVERED:", 1, CLUSTER_DEADLINE).remove(0);
    let prefix = format!("[api-monitor] RECOVERED: {url} is up after ");
    assert!(recovered.subject().starts_with(&prefix), "{}", recovered.subject());

    // Two leases more (six probes, a few beats of every member): nothing else is sent.
    wait_probes(&api, 2 * (LEASE.as_secs() as usize) + 1);
    assert_eq!(cluster.subjects().len(), 2, "one OUTAGE, one RECOVERED: {:?}", cluster.subjects());
    cluster.assert_keys_unique();
    for mail in [&outage, &recovered] {
        let key = support::cluster::key_of(mail);
        assert_eq!(senders(&cluster, &key), [leader], "only the leader sent {}", mail.subject());
    }
    let rows = state_rows(&cluster, &url);
    assert_eq!(downs(&rows, "direct"), 1, "one site transition to down, by one owner: {rows:?}");
    assert_eq!(downs(&rows, "global"), 1, "one global outage row: {rows:?}");
    let last_global = rows.iter().rev().find(|(r, _)| r == "global");
    assert_eq!(last_global, Some(&("global".to_owned(), true)), "recovered globally: {rows:?}");
}

#[test]
fn sigkill_the_leader_mid_outage_recovery_goes_out_once() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_sigkill") else { return };
    let api = FakeApi::start(&[]);
    let url = api.health_url();
    let all: Vec<usize> = (0..3).map(|_| cluster.join("direct", &["--url", &url])).collect();
    let leader = cluster.wait_for_leader(&[]);
    cluster.wait_settled(&all, 1);

    api.set_mode("down");
    let outage = cluster.wait_mails("OUTAGE:", 1, CLUSTER_DEADLINE).remove(0);
    let killed = &cluster.members[leader];
    // Killed between the server's "250" and its record of the delivery, any sender delivers
    // again (same Message-ID: the one documented window of tests/crash.rs). The kill comes
    // after the record, so a second OUTAGE here would be a real duplicate.
    let recorded =
        format!("notification recorded as sent key={}", support::cluster::key_of(&outage));
    killed.wait_since(0, &recorded, CLUSTER_DEADLINE);
    let (killed_id, killed_label) = (killed.id.clone(), killed.label.clone());
    eprintln!(
        "SIGKILL the leader {killed_label} (pid {}, instance {killed_id})",
        killed.process.pid()
    );
    killed.signal("KILL");
    let killed_at = Instant::now();
    api.set_mode("ok");

    let recovered = cluster.wait_mails("RECOVERED:", 1, Duration::from_secs(60)).remove(0);
    let failover = recovered.at.duration_since(killed_at);
    eprintln!("failover: SIGKILL of the leader → recovery email in {failover:?}");
    assert!(failover < Duration::from_secs(60), "{failover:?}");
    let new_leader = cluster.wait_for_leader(&[leader]);
    let key = support::cluster::key_of(&recovered);
    assert_eq!(senders(&cluster, &key), [new_leader], "the new leader sent the recovery");

    let lost = cluster.wait_mails("MEMBER LOST", 1, CLUSTER_DEADLINE).remove(0);
    assert!(names(&lost, &killed_id), "MEMBER LOST names {killed_id}:\n{}", lost.text());

    wait_probes(&api, 2 * (LEASE.as_secs() as usize) + 1);
    let count = |needle| cluster.mails(needle).len();
    assert_eq!(
        (count("OUTAGE:"), count("RECOVERED:"), count("MEMBER LOST")),
        (1, 1, 1),
        "each once: {:?}",
        cluster.subjects()
    );
    cluster.assert_keys_unique();
    let rows = state_rows(&cluster, &url);
    assert_eq!(downs(&rows, "global"), 1, "{rows:?}");
    assert_eq!(rows.iter().rev().find(|(r, _)| r == "global").map(|r| r.1), Some(true));
}

#[test]
fn sigstop_the_leader_two_leases_sends_nothing_stale() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_sigstop") else { return };
    let api = FakeApi::start(&[]);
    let url = api.health_url();
    let all: Vec<usize> = (0..3).map(|_| cluster.join("direct", &["--url", &url])).collect();
    let old = cluster.wait_for_leader(&[]);
    cluster.wait_settled(&all, 1);

    let frozen: &Member = &cluster.members[old];
    frozen.signal("STOP");
    let stopped_at = Instant::now();
    api.set_mode("down");
    let outage = cluster.wait_mails("OUTAGE:", 1, CLUSTER_DEADLINE).remove(0);
    let new = cluster.wait_for_leader(&[old]);
    eprintln!(
        "outage mailed {:?} after freezing the leader; new leader {}",
        outage.at.duration_since(stopped_at),
        cluster.members[new].label
    );
    assert_eq!(senders(&cluster, &support::cluster::key_of(&outage)), [new]);

    // Frozen for two leases and a second: long enough to be replaced, not told so.
    sleep_until(stopped_at + 2 * LEASE + Duration::from_secs(1));
    let frozen = &cluster.members[old];
    let woke = frozen.mark();
    frozen.signal("CONT");
    let deposed = frozen.wait_since(woke, "NOT LEADER cluster=", CLUSTER_DEADLINE);
    assert!(deposed.contains(&format!("cluster={}", cluster.name)), "{deposed}");

    wait_probes(&api, 2 * (LEASE.as_secs() as usize) + 1);
    assert_eq!(cluster.mails("OUTAGE:").len(), 1, "no stale OUTAGE: {:?}", cluster.subjects());
    cluster.assert_keys_unique();
    assert_eq!(
        frozen.count_since(woke, "notification sent"),
        0,
        "the woken ex-leader sent nothing: {:?}",
        frozen.lines_since(woke)
    );
    let rows = state_rows(&cluster, &url);
    assert_eq!(downs(&rows, "direct"), 1, "no stale site transition either: {rows:?}");
    assert_eq!(downs(&rows, "global"), 1, "{rows:?}");
}

#[test]
fn sigstop_the_owner_two_leases_writes_nothing_stale() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_owner") else { return };
    let api = FakeApi::start(&[]);
    let url = api.health_url();
    let all: Vec<usize> = (0..3).map(|_| cluster.join("direct", &["--url", &url])).collect();
    cluster.wait_for_leader(&[]);
    cluster.wait_settled(&all, 1);
    let owner = *all
        .iter()
        .find(|&&i| cluster.members[i].owning().is_some_and(|o| o.targets == 1))
        .expect("an owner");

    // Frozen mid-schedule with the API up, woken two leases later with it down: its probe
    // schedule is far behind, and whatever it catches up on must not be recorded, since the
    // target was adopted by another member meanwhile.
    cluster.members[owner].signal("STOP");
    let stopped_at = Instant::now();
    api.set_mode("down");
    cluster.wait_mails("OUTAGE:", 1, CLUSTER_DEADLINE);
    sleep_until(stopped_at + 2 * LEASE + Duration::from_secs(1));
    let frozen = &cluster.members[owner];
    let woke = frozen.mark();
    frozen.signal("CONT");
    frozen.wait_since(woke, "owning targets=0 ", CLUSTER_DEADLINE);
    wait_probes(&api, 2 * (LEASE.as_secs() as usize) + 1);

    let after = frozen.lines_since(woke);
    assert!(
        !after.iter().any(|l| l.contains("SITE DOWN") || l.contains("SITE UP")),
        "the woken ex-owner decided nothing: {after:#?}"
    );
    let rows = state_rows(&cluster, &url);
    assert_eq!(downs(&rows, "direct"), 1, "one site transition to down: {rows:?}");
    assert_eq!(cluster.mails("OUTAGE:").len(), 1, "{:?}", cluster.subjects());
    cluster.assert_keys_unique();
}

#[test]
fn members_starting_together_record_each_site_transition_once() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_join") else { return };
    // The default lease (members beat every 5 s) and thresholds, four targets down from the
    // start (nothing listens: each probe fails at once).
    cluster.lease = Duration::from_secs(15);
    let dead = support::reserve_port();
    let urls: Vec<String> = (0..4).map(|i| format!("http://127.0.0.1:{dead}/t/{i}")).collect();
    let args: Vec<&str> = urls.iter().flat_map(|u| ["--url", u.as_str()]).collect();
    let all: Vec<usize> = (0..3).map(|_| cluster.join("direct", &args)).collect();
    cluster.wait_for_leader(&[]);
    cluster.wait_settled(&all, 4);
    let mails = cluster.wait_mails("OUTAGE:", 4, CLUSTER_DEADLINE);
    // A beat more, so that every member has acted on the view it settled on.
    std::thread::sleep(cluster.lease / 3);

    let mut per_target = Vec::new();
    for url in &urls {
        let rows = state_rows(&cluster, url);
        per_target.push((url.as_str(), downs(&rows, "direct"), downs(&rows, "global")));
    }
    eprintln!("(target, site rows down, global rows down): {per_target:?}");
    assert_eq!(mails.len(), 4, "one OUTAGE per target: {:?}", cluster.subjects());
    cluster.assert_keys_unique();
    assert!(
        per_target.iter().all(|&(_, site, global)| site == 1 && global == 1),
        "each target's site transition recorded once, by its one owner; a member that joins \
         claims its share before the others have seen it join, so for up to a beat two members \
         own (probe and record) the same target: {per_target:?}"
    );
}

/// Per path, the probes a [`HealthServer`] answered over `length` from `from` (after waiting
/// for its end), with every path of `paths` present (0 when never hit).
fn probes_per_path(
    server: &HealthServer,
    paths: &[String],
    from: Instant,
    length: Duration,
) -> HashMap<String, usize> {
    sleep_until(from + length);
    let mut counts = server.hits_per_path(from, from + length);
    for p in paths {
        counts.entry(p.clone()).or_insert(0);
    }
    counts
}

/// Panics unless every path was probed between `low` and `high` times; `when` for the message.
fn assert_each_between(counts: &HashMap<String, usize>, low: usize, high: usize, when: &str) {
    let mut off: Vec<(&String, &usize)> =
        counts.iter().filter(|(_, &n)| n < low || n > high).collect();
    off.sort();
    let mut histogram: Vec<(usize, usize)> = Vec::new();
    for &n in counts.values() {
        match histogram.iter_mut().find(|(k, _)| *k == n) {
            Some((_, c)) => *c += 1,
            None => histogram.push((n, 1)),
        }
    }
    histogram.sort();
    eprintln!("{when}: probes per target → number of targets: {histogram:?}");
    assert!(
        off.is_empty(),
        "{when}: {} of {} targets not probed {low}..={high} times (first: {:?})",
        off.len(),
        counts.len(),
        &off[..off.len().min(10)]
    );
}

#[test]
fn cut_one_member_from_the_database() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_cut") else { return };
    let server = HealthServer::start(4).unwrap_or_else(|e| panic!("{e}"));
    // Twelve targets: a member owns none of them with probability (2/3)^12 < 1%, and the one
    // cut is chosen among those that own some.
    let paths: Vec<String> = (0..12).map(|i| format!("/t/{i}")).collect();
    let urls: Vec<String> = paths.iter().map(|p| server.url(p)).collect();
    let args: Vec<&str> = urls.iter().flat_map(|u| ["--url", u.as_str()]).collect();
    let all: Vec<usize> = (0..3).map(|_| cluster.join("direct", &args)).collect();
    let leader = cluster.wait_for_leader(&[]);
    cluster.wait_settled(&all, 12);
    let cut = *all
        .iter()
        .find(|&&i| i != leader && cluster.members[i].owning().is_some_and(|o| o.targets > 0))
        .expect("a member other than the leader owns some of 12 targets");
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != cut).collect();
    let share = cluster.members[cut].owning().unwrap().targets;
    let cut_id = cluster.members[cut].id.clone();
    eprintln!("cutting {} (owns {share} of 12) from the database", cluster.members[cut].label);

    let member = &cluster.members[cut];
    let mark = member.mark();
    member.forwarder.cut();
    let cut_at = Instant::now();
    let gave_up = member.wait_since(mark, "owning targets=0 ", CLUSTER_DEADLINE);
    eprintln!("{:?} after the cut the member says: {gave_up}", cut_at.elapsed());
    let took = cluster.wait_settled(&others, 12);
    eprintln!("the other two own all 12 targets {:?} after the cut", cut_at.elapsed());
    assert!(took < CLUSTER_DEADLINE);

    let window = 6 * INTERVAL;
    let counts = probes_per_path(&server, &paths, Instant::now(), window);
    assert_each_between(&counts, 3, 9, "cut, 6 intervals");
    let lost = cluster.wait_mails("MEMBER LOST", 1, CLUSTER_DEADLINE).remove(0);
    assert!(names(&lost, &cut_id), "MEMBER LOST names {cut_id}:\n{}", lost.text());
    let member = &cluster.members[cut];
    assert_eq!(member.count_since(mark, "notification sent"), 0, "the cut member sent nothing");

    let back = member.mark();
    member.forwarder.restore();
    let restored_at = Instant::now();
    let rejoined = cluster.eventually("the restored member's share back", CLUSTER_DEADLINE, || {
        cluster.members[cut].owning_since(back).filter(|o| o.targets > 0)
    });
    eprintln!("{:?} after the restore: owning {rejoined:?}", restored_at.elapsed());
    assert_eq!(rejoined.targets, share, "the same share as before: the same ids, the same hash");
    cluster.wait_settled(&all, 12);
    cluster.wait_mails("MEMBER BACK", 1, CLUSTER_DEADLINE);
    let counts = probes_per_path(&server, &paths, Instant::now(), window);
    assert_each_between(&counts, 3, 9, "restored, 6 intervals");

    let mut subjects = cluster.subjects();
    let received = subjects.len();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), received, "no email twice: {:?}", cluster.subjects());
    cluster.assert_keys_unique();
    let count = |needle| cluster.mails(needle).len();
    assert_eq!((count("MEMBER LOST"), count("MEMBER BACK")), (1, 1), "{:?}", cluster.subjects());
}

/// Sites eu and us on one machine. One URL, two answers: eu's proxy reaches api `a` whatever
/// it is asked, us's reaches api `b`, so the API can be down from one site only.
struct TwoSites {
    a: FakeApi,
    b: FakeApi,
    eu_proxy: ConnectProxy,
    us_proxy: ConnectProxy,
    /// The one target URL (api `a`'s, as eu and us both name it).
    url: String,
    /// The members' flags: the URL, both sites' regions and `--quorum 2`.
    flags: Vec<String>,
}

impl TwoSites {
    fn start() -> TwoSites {
        let (a, b) = (FakeApi::start(&[]), FakeApi::start(&[]));
        let eu_proxy = ConnectProxy::tunnel_to(a.addr().parse().unwrap());
        let us_proxy = ConnectProxy::tunnel_to(b.addr().parse().unwrap());
        let url = a.health_url();
        let flags = [
            "--url",
            &url,
            "--region",
            &format!("eu={}", eu_proxy.url),
            "--region",
            &format!("us={}", us_proxy.url),
            "--quorum",
            "2",
        ]
        .map(String::from)
        .to_vec();
        TwoSites { a, b, eu_proxy, us_proxy, url, flags }
    }
}

#[test]
fn two_sites_quorum_two() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_sites") else { return };
    let TwoSites { a, b, eu_proxy, us_proxy, url, flags } = TwoSites::start();
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let eu_members = [cluster.join("eu", &args), cluster.join("eu", &args)];
    let us_members = [cluster.join("us", &args)];
    let leader = cluster.wait_for_leader(&[]);
    cluster.wait_settled(&eu_members, 1);
    cluster.wait_settled(&us_members, 1);
    wait_probes(&b, 2);
    let tunnels = |p: &ConnectProxy| p.tunnels.load(std::sync::atomic::Ordering::SeqCst);
    assert!(tunnels(&eu_proxy) > 0 && tunnels(&us_proxy) > 0, "each site through its proxy");

    // Down from eu only: eu's row says so, the leader sees it, and that is not an outage.
    a.set_mode("down");
    cluster.eventually("a state row of eu saying down", CLUSTER_DEADLINE, || {
        (downs(&state_rows(&cluster, &url), "eu") > 0).then_some(())
    });
    let seen = cluster.members[leader].wait_since(
        0,
        &format!("seen down target={url} sites_down=eu "),
        CLUSTER_DEADLINE,
    );
    assert!(seen.contains("quorum=2") && seen.contains("live_sites=2"), "{seen}");
    wait_probes(&b, 3 * (LEASE.as_secs() as usize));
    assert!(cluster.mails("OUTAGE:").is_empty(), "one site of two: {:?}", cluster.subjects());
    assert_eq!(downs(&state_rows(&cluster, &url), "global"), 0, "no global outage row");

    // Down from us too: the quorum is met, one email names both sites.
    b.set_mode("down");
    let outage = cluster.wait_mails("OUTAGE:", 1, CLUSTER_DEADLINE).remove(0);
    assert_eq!(outage.subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    assert_eq!(fact(&outage, "Seen down from").as_deref(), Some("eu, us"), "{}", outage.text());

    a.set_mode("ok");
    b.set_mode("ok");
    let recovered = cluster.wait_mails("RECOVERED:", 1, CLUSTER_DEADLINE).remove(0);
    assert!(recovered.subject().starts_with(&format!("[api-monitor] RECOVERED: {url} is up")));
    wait_probes(&b, 2 * (LEASE.as_secs() as usize) + 1);
    assert_eq!(cluster.subjects().len(), 2, "one OUTAGE, one RECOVERED: {:?}", cluster.subjects());
    cluster.assert_keys_unique();
    let rows = state_rows(&cluster, &url);
    assert_eq!((downs(&rows, "eu"), downs(&rows, "us"), downs(&rows, "global")), (1, 1, 1));
}

#[test]
fn sigterm_the_leader_hands_over_within_a_beat_and_is_not_lost() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_sigterm") else { return };
    let api = FakeApi::start(&[]);
    let url = api.health_url();
    let all: Vec<usize> = (0..2).map(|_| cluster.join("direct", &["--url", &url])).collect();
    let old = cluster.wait_for_leader(&[]);
    cluster.wait_settled(&all, 1);
    let heir = all[1 - old];
    let leaving_id = cluster.members[old].id.clone();
    let mark = cluster.members[heir].mark();

    cluster.members[old].signal("TERM");
    let stopped_at = Instant::now();
    let status = cluster.members[old].process.wait_exit();
    assert_eq!(status.code(), Some(0), "a clean stop");
    cluster.members[heir].wait_since(mark, "LEADER cluster=", CLUSTER_DEADLINE);
    let handover = stopped_at.elapsed();
    eprintln!("SIGTERM of the leader → the other member leads after {handover:?}");
    // The lease was expired by the one leaving, so the heir takes over at its next beat (a
    // third of the lease), not when the lease runs out as after a crash.
    assert!(handover < LEASE, "took {handover:?}: as slow as a crash failover");
    let sql = format!("SELECT COUNT(*) FROM cluster_member WHERE instance_id = '{leaving_id}'");
    assert_eq!(cluster.query::<i64>(&sql), [0], "the member row went with it");
    cluster.wait_settled(&[heir], 1);

    // Leaving is not being lost: nothing is mailed about it.
    wait_probes(&api, 2 * (LEASE.as_secs() as usize) + 1);
    assert!(cluster.subjects().is_empty(), "{:?}", cluster.subjects());
}

#[test]
fn a_lone_surviving_site_still_alerts() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_lone") else { return };
    let TwoSites { a, url, flags, .. } = TwoSites::start();
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let eu_member = cluster.join("eu", &args);
    let us_member = cluster.join("us", &args);
    cluster.wait_settled(&[eu_member], 1);
    cluster.wait_settled(&[us_member], 1);
    // The us site goes away entirely (its only member killed, the leader or not); eu is then
    // the one live site.
    cluster.members[us_member].signal("KILL");
    cluster.wait_mails("MEMBER LOST", 1, CLUSTER_DEADLINE);
    cluster.wait_for_leader(&[us_member]);

    // A quorum of 2 is capped at the 1 live site: eu alone seeing it down is an outage.
    a.set_mode("down");
    let outage = cluster.wait_mails("OUTAGE:", 1, CLUSTER_DEADLINE).remove(0);
    assert_eq!(outage.subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    assert_eq!(fact(&outage, "Seen down from").as_deref(), Some("eu"), "{}", outage.text());
    assert_eq!(fact(&outage, "Sites not reporting").as_deref(), Some("us"), "{}", outage.text());
    a.set_mode("ok");
    cluster.wait_mails("RECOVERED:", 1, CLUSTER_DEADLINE);
    wait_probes(&a, 2 * (LEASE.as_secs() as usize) + 1);
    let count = |needle| cluster.mails(needle).len();
    assert_eq!((count("OUTAGE:"), count("RECOVERED:")), (1, 1), "{:?}", cluster.subjects());
    cluster.assert_keys_unique();
}

#[test]
fn three_members_three_thousand_targets() {
    let _alone = HEAVY.write().unwrap_or_else(|p| p.into_inner());
    let Some(mut cluster) = Cluster::new("cl_3000") else { return };
    let interval = Duration::from_secs(5);
    cluster.interval = interval;
    cluster.verbose = false; // 600 probes a second: their debug lines would be the load
    let server = HealthServer::start(8).unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<String> = (0..3000).map(|i| format!("/t/{i}")).collect();
    let config = temp_dir("cluster3000").join("targets.toml");
    let targets: String =
        paths.iter().map(|p| format!("[[target]]\nurl = \"{}\"\n", server.url(p))).collect();
    std::fs::write(&config, targets).unwrap();
    let config = config.display().to_string();
    let all: Vec<usize> = (0..3).map(|_| cluster.join("direct", &["--config", &config])).collect();
    let leader = cluster.wait_for_leader(&[]);
    let settled = cluster.wait_settled(&all, 3000);
    eprintln!("3 members settled on 3000 targets in {settled:?}");

    // Three intervals, one in: every target 3 times (2 or 4 at a window's edge).
    let window = 3 * interval;
    let start = Instant::now() + interval;
    let counts = probes_per_path(&server, &paths, start, window);
    assert_each_between(&counts, 2, 4, "3 members, 3 intervals");

    let victim = *all.iter().find(|&&i| i != leader).unwrap();
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    cluster.members[victim].signal("KILL");
    let killed_at = Instant::now();
    let took = cluster.wait_settled(&survivors, 3000);
    eprintln!("survivors own all 3000 targets {took:?} after the SIGKILL");

    // The handover (a lease and an interval) may probe a moved target early or late, never
    // twice as often as it should.
    let handover = LEASE + interval;
    sleep_until(killed_at + handover);
    let during = probes_per_path(&server, &paths, killed_at, handover);
    let most = during.values().copied().max().unwrap_or(0);
    eprintln!("handover ({handover:?}): at most {most} probes of one target");
    assert!(most <= 4, "a target probed {most} times in {handover:?} at a 5s interval");

    let counts = probes_per_path(&server, &paths, killed_at + handover, window);
    assert_each_between(&counts, 2, 4, "2 members, 3 intervals after the handover");
}

#[test]
fn sqlite_is_refused_in_cluster_mode() {
    let db = sqlite("cluster_sqlite");
    let file = std::path::PathBuf::from(db.trim_start_matches("sqlite://"));
    let args = ["run", "--cluster", "prod", "--db", &db, "--url", "http://127.0.0.1:9/health"];
    let (status, stdout, stderr) = run_monitor(&args, &[]);
    assert_eq!(status.code(), Some(2), "a configuration error: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(lines[0].contains("cluster mode needs a MySQL store"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout:?}");
    assert!(!file.exists(), "nothing was created at {}", file.display());
}

#[test]
fn a_silence_holds_back_the_global_outage_through_a_leader_kill_and_one_summary_follows() {
    let _turn = shared_turn();
    let Some(mut cluster) = Cluster::new("cl_silence") else { return };
    let api = FakeApi::start(&[]);
    let url = api.health_url();
    let all: Vec<usize> = (0..2).map(|_| cluster.join("direct", &["--url", &url])).collect();
    let leader = cluster.wait_for_leader(&[]);
    cluster.wait_settled(&all, 1);
    let (status, out, err) = run_monitor(
        &[
            "silence",
            "--db",
            &cluster.db.url,
            "--target",
            &url,
            "--for",
            "1h",
            "--reason",
            "deploy",
        ],
        &[],
    );
    assert!(status.success(), "{out} {err}");
    cluster.members[leader].wait_since(0, "SILENCE #1 target=", CLUSTER_DEADLINE);

    api.set_mode("down");
    let held = format!("notification held back target={url} region=global");
    cluster.members[leader].wait_since(0, &held, CLUSTER_DEADLINE);
    // The leader dies in the maintenance: its successor must know the summary is owed.
    cluster.members[leader].signal("KILL");
    let next = cluster.wait_for_leader(&[leader]);
    cluster.members[next].wait_since(0, "SILENCE #1 target=", CLUSTER_DEADLINE);
    wait_probes(&api, 2 * (LEASE.as_secs() as usize) + 1);
    assert!(cluster.mails("OUTAGE:").is_empty(), "held back: {:?}", cluster.subjects());

    let (status, out, err) =
        run_monitor(&["silence", "--db", &cluster.db.url, "--clear", "all"], &[]);
    assert!(status.success(), "{out} {err}");
    let summary = cluster.wait_mails("OUTAGE:", 1, CLUSTER_DEADLINE).remove(0);
    assert!(summary.subject().ends_with("(after maintenance)"), "{}", summary.subject());
    assert!(summary.text().contains("silence #1: deploy"), "{}", summary.text());
    let key = support::cluster::key_of(&summary);
    let sent = format!("notification sent key={key} ");
    cluster.members[next].wait_since(0, &sent, CLUSTER_DEADLINE);
    assert_eq!(senders(&cluster, &key), [next], "the new leader sent it");

    api.set_mode("ok");
    cluster.wait_mails("RECOVERED:", 1, CLUSTER_DEADLINE);
    wait_probes(&api, 2 * (LEASE.as_secs() as usize) + 1);
    let count = |needle| cluster.mails(needle).len();
    assert_eq!((count("OUTAGE:"), count("RECOVERED:")), (1, 1), "{:?}", cluster.subjects());
    cluster.assert_keys_unique();
}
