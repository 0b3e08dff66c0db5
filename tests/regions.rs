//! Targets × regions through the real binaries: a region probing through a real CONNECT proxy
//! on loopback, a blind region, two targets, and reminders.

mod support;

use support::{
    args, monitor, reserve_port, rows, sqlite, temp_dir, ConnectProxy, FakeApi, SmtpServer, SUPPORT,
};

/// The standard fast loop on loopback for `url` ([`support::args`]), plus `extra` arguments.
fn monitor_with(url: &str, db: &str, smtp: &str, extra: &[&str]) -> support::Process {
    let mut all = args(url, db, smtp);
    all.extend_from_slice(extra);
    monitor(&all)
}

#[test]
fn a_region_that_loses_the_api_alerts_for_that_region_only() {
    let api = FakeApi::start(&[]);
    let proxy = ConnectProxy::start();
    let smtp = SmtpServer::start();
    let dir = temp_dir("region");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    let url = api.health_url();
    let config = dir.join("monitor.toml");
    std::fs::write(
        &config,
        format!(
            "support = [\"{SUPPORT}\"]\ninterval = \"200ms\"\ntimeout = \"2s\"\n\
             [[region]]\nname = \"direct\"\n\
             [[region]]\nname = \"eu\"\nproxy = \"{}\"\nrecipients = [\"eu-oncall@example.com\"]\n\
             [[target]]\nurl = \"{url}\"\n",
            proxy.url
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let mon = monitor(&[
        "--config",
        &config,
        "--db",
        &db,
        "--smtp",
        &smtp.url,
        "--from",
        "monitor@example.com",
    ]);
    mon.wait_for_line("UP target=");
    mon.wait_for_count("UP target=", 2);

    proxy.block(true);
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] OUTAGE: {url} is down (region eu)"));
    assert_eq!(mails[0].to, [SUPPORT, "eu-oncall@example.com"], "global and eu recipients");
    assert!(mails[0].text().contains("proxy could not reach the API"), "{}", mails[0].text());
    proxy.block(false);
    let mails = smtp.wait_for(2);
    assert!(
        mails[1].subject().starts_with(&format!("[api-monitor] RECOVERED: {url} is up after ")),
        "{}",
        mails[1].subject()
    );
    assert!(mails[1].subject().ends_with(" (region eu)"), "{}", mails[1].subject());
    let probes = mon.count("probe ok target");
    mon.wait_for_count("probe ok target", probes + 6);
    assert_eq!(smtp.mails.snapshot().len(), 2, "nothing for direct, nothing twice");
    assert!(proxy.tunnels.load(std::sync::atomic::Ordering::SeqCst) > 0, "eu went through it");

    drop(mon);
    let eu_rows: Vec<_> = store_rows(&db, &url, "eu").iter().map(|r| r.healthy).collect();
    assert_eq!(eu_rows, [true, false, true]);
    let direct_rows: Vec<_> = rows(&db, &url).iter().map(|r| r.healthy).collect();
    assert_eq!(direct_rows, [true], "direct saw no outage");
}

fn store_rows(db: &str, target: &str, region: &str) -> Vec<api_monitor::store::StateRow> {
    api_monitor::store::open(db)
        .unwrap()
        .since(target, region, api_monitor::timestamp::Timestamp::from_millis(0))
        .unwrap()
}

#[test]
fn a_dead_proxy_makes_its_region_blind_once_without_an_outage() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let dead = format!("eu=http://127.0.0.1:{}", reserve_port());
    let url = api.health_url();
    let mon = monitor_with(&url, &sqlite("blind"), &smtp.url, &["--region", &dead]);
    let blind = mon.wait_for_line("BLIND target=");
    assert!(blind.contains("connection refused"), "{blind}");
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] BLIND: region eu cannot probe {url}"));
    let probes = mon.count("probe blind");
    mon.wait_for_count("probe blind", probes + 8);
    assert_eq!(mon.count("BLIND target="), 1, "logged once per blind period");
    assert_eq!(mon.count("OUTAGE"), 0, "a blind region is not an outage");
    assert_eq!(smtp.mails.snapshot().len(), 1, "mailed once");
}

#[test]
fn two_targets_one_failing_only_its_emails_and_rows() {
    let good = FakeApi::start(&[]);
    let bad = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let db = sqlite("two");
    let (good_url, bad_url) = (good.health_url(), bad.health_url());
    let mon = monitor_with(&good_url, &db, &smtp.url, &["--url", &bad_url]);
    mon.wait_for_count("UP target=", 2);
    bad.set_mode("error");
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] OUTAGE: {bad_url} is down"));
    let probes = mon.count("probe ok target");
    mon.wait_for_count("probe ok target", probes + 6);
    assert_eq!(smtp.mails.snapshot().len(), 1);
    drop(mon);
    let good_rows: Vec<_> = rows(&db, &good_url).iter().map(|r| r.healthy).collect();
    let bad_rows: Vec<_> = rows(&db, &bad_url).iter().map(|r| r.healthy).collect();
    assert_eq!((good_rows, bad_rows), (vec![true], vec![true, false]));
    assert_eq!(rows(&db, &bad_url)[1].reason.as_deref(), Some("HTTP 503"));
}

#[test]
fn reminders_come_at_the_configured_spacing_and_stop_at_recovery() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let mon = monitor_with(&url, &sqlite("remind"), &smtp.url, &["--remind", "1s"]);
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    let mails = smtp.wait_for(3); // the outage and two reminders
    assert!(mails[0].subject().contains("OUTAGE"));
    // One reminder per whole second of outage: 1s, 2s (a stalled machine may skip one, never
    // send two for the same period).
    let prefix = format!("[api-monitor] STILL DOWN: {url} has been down for ");
    let seconds: Vec<u64> = mails[1..3]
        .iter()
        .map(|m| {
            let subject = m.subject();
            let rest = subject.strip_prefix(&prefix).unwrap_or_else(|| panic!("{subject}"));
            rest.trim_end_matches('s').parse().unwrap_or_else(|_| panic!("{subject}"))
        })
        .collect();
    assert!(seconds[0] >= 1 && seconds[1] > seconds[0], "spacing of one period: {seconds:?}");
    api.set_mode("ok");
    mon.wait_for_line("RECOVERED target=");
    let recovered = smtp
        .mails
        .wait_until("the recovery email", |m| m.iter().any(|m| m.subject().contains("RECOVERED")));
    let probes = mon.count("probe ok target");
    mon.wait_for_count("probe ok target", probes + 10); // 2 s more
    let after = smtp.mails.snapshot();
    assert_eq!(after.len(), recovered.len(), "no reminder after the recovery");
    assert!(after.last().unwrap().subject().contains("RECOVERED"));
}

#[test]
fn an_api_down_from_every_region_says_so() {
    let api = FakeApi::start(&[]);
    let proxy = ConnectProxy::start();
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let eu = format!("eu={}", proxy.url);
    let regions = ["--region", "direct", "--region", &eu];
    let mon = monitor_with(&url, &sqlite("allregions"), &smtp.url, &regions);
    mon.wait_for_count("UP target=", 2);
    api.set_mode("down");
    let mails = smtp.wait_for(2);
    let mut subjects: Vec<String> = mails.iter().map(|m| m.subject()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            format!("[api-monitor] OUTAGE: {url} is down (region direct)"),
            format!("[api-monitor] OUTAGE: {url} is down (region eu)"),
        ]
    );
    assert!(
        mails[1].text().contains("down from all 2 regions"),
        "the second region's outage completes the picture:\n{}",
        mails[1].text()
    );
    assert!(!mails[0].text().contains("down from all"), "{}", mails[0].text());
    mon.wait_for_line("DOWN FROM ALL 2 REGIONS");
}
