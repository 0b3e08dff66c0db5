//! Maintenance end to end: the real binary, a real fake API, a real SMTP server, a real
//! webhook receiver and the `api-monitor silence` command.
//!
//! What the README promises: during a silence or a maintenance window probes go on and
//! transitions are recorded (marked), but no notification goes out — not even after a
//! restart, because the silence is in the database; when it ends, one notification says what
//! happened if the state is not as before, and none if it is.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{monitor_env, run_monitor, temp_dir, FakeApi, SmtpServer};
use testkit::{Receiver, Reply};

/// The config file: one target (the fake API, every 200 ms), email and a webhook, and `extra`.
fn config(dir: &Path, api: &FakeApi, smtp: &SmtpServer, hooks: &Receiver, extra: &str) -> String {
    let text = format!(
        "interval = \"200ms\"\n\
         support = [\"oncall@example.com\"]\n\
         smtp = \"{smtp}\"\n\
         db = \"sqlite://{db}\"\n\
         channels = [\"hook\"]\n\
         [[target]]\nurl = \"{api}\"\n\
         [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\n{extra}",
        smtp = smtp.url,
        db = dir.join("monitor.db").display(),
        api = api.health_url(),
        hook = hooks.url("/hook"),
    );
    let path = dir.join("monitor.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Runs `api-monitor silence ARGS --config FILE`; returns stdout, asserting success.
fn silence(file: &str, args: &[&str]) -> String {
    let mut all = vec!["silence"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", file]);
    let (status, out, err) = run_monitor(&all, &[]);
    assert!(status.success(), "silence {args:?}: {status:?} {out} {err}");
    out
}

/// `(healthy, maintenance, held)` of every state row of the target, oldest first.
fn marks(dir: &Path, target: &str) -> Vec<(bool, Option<String>, bool)> {
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    (support::rows(&db, target).into_iter()).map(|r| (r.healthy, r.maintenance, r.held)).collect()
}

#[test]
fn a_silence_holds_back_the_outage_across_a_restart_and_one_summary_follows_when_it_ends() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let hooks = Receiver::start();
    hooks.answer_on("/hook", &[], Reply::Status(200));
    let dir = temp_dir("maintenance-silence");
    let file = config(&dir, &api, &smtp, &hooks, "");
    let target = api.health_url();

    let mon = monitor_env(&["run", "--config", &file, "-v"], &[]);
    mon.wait_for_line("UP target=");
    let out = silence(&file, &["--target", &target, "--for", "1h", "--reason", "deploy"]);
    assert!(out.starts_with("silence #1: "), "{out}");
    mon.wait_for_line("SILENCE #1 target=");

    api.set_mode("down");
    mon.wait_for_line("OUTAGE target=");
    mon.wait_for_line("notification held back");
    // A restart in the middle: the silence and the owed summary are in the database.
    let (status, _) = mon.stop();
    assert!(status.success());
    let mon = monitor_env(&["run", "--config", &file, "-v"], &[]);
    mon.wait_for_line("had notifications held back by maintenance");
    mon.wait_for_line("SILENCE #1 target=");
    let failed = mon.count("probe failed");
    mon.wait_for_count("probe failed", failed + 5);
    assert_eq!(smtp.mails.len(), 0, "nothing sent during the silence, before or after restart");
    assert!(hooks.received().is_empty(), "nor to a channel");
    assert_eq!(
        marks(&dir, &target),
        [(true, None, false), (false, Some("silence #1: deploy".into()), true)],
        "the outage is recorded, marked, its summary owed"
    );
    assert!(silence(&file, &["--list"]).contains("#1  "), "listed while it runs");

    // Cleared early: the next read of the silences ends it, the next probe sends the summary.
    let out = silence(&file, &["--clear", "1"]);
    assert!(out.starts_with("ended 1 silence(s)"), "{out}");
    mon.wait_for_line("MAINTENANCE OVER target=");
    let mails = smtp.wait_for(1);
    let mail = &mails[0];
    assert!(mail.subject().contains("OUTAGE: "), "{}", mail.subject());
    assert!(mail.subject().contains("(after maintenance)"), "{}", mail.subject());
    let text = mail.text();
    assert!(text.contains("Maintenance: silence #1: deploy"), "{text}");
    let during = text.lines().find(|l| l.starts_with("During it:")).unwrap_or_default();
    assert!(during.contains(" down at ") && during.contains("(status \"DOWN\")"), "{text}");
    // The webhook goes out beside the mail, not before it: wait for it too.
    let hook: Vec<Value> = (hooks.wait_for(1).iter())
        .filter(|r| r.path == "/hook")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(hook.len(), 1, "{hook:?}");
    assert_eq!(hook[0]["event"], "outage");
    assert_eq!(hook[0]["maintenance"], "silence #1: deploy");
    assert!(!marks(&dir, &target)[1].2, "the summary released the held row");

    // After the maintenance, notifications are as usual.
    api.set_mode("ok");
    mon.wait_for_line("RECOVERED target=");
    let mails = smtp.wait_for(2);
    assert!(mails[1].subject().contains("RECOVERED: "), "{}", mails[1].subject());
    let (status, log) = mon.stop();
    assert!(status.success());
    assert_eq!(log.matches("MAINTENANCE OVER").count(), 1, "one summary");
}

#[test]
fn a_window_that_ends_as_it_began_sends_nothing_and_marks_what_happened() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let hooks = Receiver::start();
    hooks.answer_on("/hook", &[], Reply::Status(200));
    let dir = temp_dir("maintenance-window");
    // A one-off window from a minute ago to 20 s from now: the whole run starts inside it.
    let now = std::time::SystemTime::now();
    let at = |offset: i64| {
        let t = if offset < 0 {
            now - std::time::Duration::from_secs(offset.unsigned_abs())
        } else {
            now + std::time::Duration::from_secs(offset.unsigned_abs())
        };
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let window = format!(
        "[[maintenance]]\nstart = \"{}\"\nend = \"{}\"\nreason = \"db upgrade\"\n",
        at(-60),
        at(20)
    );
    let file = config(&dir, &api, &smtp, &hooks, &window);
    let target = api.health_url();

    let mon = monitor_env(&["run", "--config", &file, "-v"], &[]);
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    mon.wait_for_line("notification held back");
    api.set_mode("ok");
    mon.wait_for_line("RECOVERED target=");
    mon.wait_for_line("MAINTENANCE OVER target=");
    // Well after the end: still nothing.
    let probes = mon.count("probe ok");
    mon.wait_for_count("probe ok", probes + 5);
    let (status, log) = mon.stop();
    assert!(status.success());
    assert!(log.contains("the state is as before it (up); 2 transition(s) during it"), "{log}");
    assert_eq!(smtp.mails.len(), 0, "no email");
    assert!(hooks.received().is_empty(), "no channel");
    let rows = marks(&dir, &target);
    assert_eq!(rows.len(), 3, "up, down, up: {rows:?}");
    let marked = |m: &Option<String>| m.as_deref().is_some_and(|m| m.starts_with("window "));
    assert!(rows.iter().all(|(_, m, held)| !held && marked(m)), "all marked, none owed: {rows:?}");
}
