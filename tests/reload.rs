//! Live reload end to end: the real binary, real fake APIs and a real SMTP server, SIGHUP.
//!
//! What the README promises: SIGHUP re-reads the config file; added targets start, removed
//! ones stop, changed settings apply, without re-alerting, losing a detector's state or an
//! undelivered notification; an invalid file is refused with the start's error and the running
//! configuration stays.

mod support;

use std::path::Path;

use support::{monitor_env, temp_dir, FakeApi, Process, SmtpServer};

/// How many extra healthy targets load the monitor while it reloads.
const LOAD: usize = 40;

/// Writes the config file: `targets` (URL, extra keys) at 200 ms, and `LOAD` healthy ones on
/// `busy`, each its own target (a query string), so that probes are in flight at every reload.
fn write(path: &Path, db: &Path, smtp: &SmtpServer, busy: &FakeApi, targets: &[(&str, &str)]) {
    let mut text = format!(
        "interval = \"200ms\"\nsupport = [\"oncall@example.com\"]\nsmtp = \"{}\"\n\
         db = \"sqlite://{}\"\n",
        smtp.url,
        db.display()
    );
    for (url, extra) in targets {
        text.push_str(&format!("[[target]]\nurl = \"{url}\"\n{extra}"));
    }
    for n in 0..LOAD {
        text.push_str(&format!("[[target]]\nurl = \"{}?n={n}\"\n", busy.health_url()));
    }
    std::fs::write(path, text).unwrap();
}

fn hangup(mon: &Process) {
    mon.signal("HUP");
}

#[test]
fn a_reload_under_load_adds_removes_and_changes_targets_without_re_alerting_or_losing_mail() {
    let down = FakeApi::start(&[]);
    let kept = FakeApi::start(&[]);
    let added = FakeApi::start(&[]);
    let busy = FakeApi::start(&[]);
    // The outage's email is refused (451) a few times: it waits in the outbox across the reload.
    let smtp = SmtpServer::start_refusing(3, 451);
    let dir = temp_dir("reload");
    let (file, db) = (dir.join("monitor.toml"), dir.join("monitor.db"));
    let (a, b, c) = (down.health_url(), kept.health_url(), added.health_url());
    write(&file, &db, &smtp, &busy, &[(&a, ""), (&b, "")]);
    let file_arg = file.display().to_string();

    let mon = monitor_env(&["run", "--config", &file_arg, "-v"], &[]);
    mon.wait_for_line(&format!("UP target={b} "));
    down.set_mode("down");
    mon.wait_for_line(&format!("OUTAGE target={a} "));
    mon.wait_for_line("notification NOT delivered");

    // Reload: `b` removed, `c` added, `a`'s failures changed; the outage email still pending.
    write(&file, &db, &smtp, &busy, &[(&a, "failures = 3\n"), (&c, "")]);
    hangup(&mon);
    let reloaded = mon.wait_for_line("RELOADED ");
    assert!(reloaded.contains(&format!("added={c} ")), "{reloaded}");
    assert!(reloaded.contains(&format!("removed={b} ")), "{reloaded}");
    assert!(reloaded.contains(&format!("changed={a}")), "{reloaded}");
    mon.wait_for_line(&format!("UP target={c} "));
    // Each pair resumes from its recorded state: `a` down (at this scale, one summary line).
    mon.wait_for_line(&format!("resumed {} target×region pairs: 1 down", LOAD + 2));
    let mails = smtp.wait_for(1);
    assert!(mails[0].subject().contains("OUTAGE"), "{}", mails[0].subject());

    // `b` is no longer probed; `a` is still down and not announced again.
    let b_probes = mon.count(&format!("probe ok target={b} "));
    let c_probes = mon.count(&format!("probe ok target={c} "));
    mon.wait_for_count(&format!("probe ok target={c} "), c_probes + 10);
    assert_eq!(mon.count(&format!("probe ok target={b} ")), b_probes, "b stopped");

    // A broken file is refused; everything goes on as it was.
    std::fs::write(&file, "interval = \"200ms\"\n[[target]]\nurl = \"nope\"\n").unwrap();
    hangup(&mon);
    let refused = mon.wait_for_line("RELOAD REFUSED");
    assert!(refused.contains("target[1].url"), "the start's error, naming the key: {refused}");
    let c_probes = mon.count(&format!("probe ok target={c} "));
    mon.wait_for_count(&format!("probe ok target={c} "), c_probes + 5);

    down.set_mode("ok");
    mon.wait_for_line(&format!("RECOVERED target={a} "));
    let mails = smtp.wait_for(2);
    let (status, log) = mon.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(mails.len(), 2, "one outage, one recovery: {:?}", subjects(&mails));
    assert!(mails[1].subject().contains("RECOVERED"), "{}", mails[1].subject());
    assert_eq!(log.matches(&format!("OUTAGE target={a} ")).count(), 1, "never re-alerted");
    assert_eq!(log.matches("RELOADED").count(), 1);
}

fn subjects(mails: &[testkit::Mail]) -> Vec<String> {
    mails.iter().map(testkit::Mail::subject).collect()
}

#[test]
fn what_a_reload_cannot_change_is_refused_and_a_stop_still_stops() {
    let api = FakeApi::start(&[]);
    let busy = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let dir = temp_dir("reload-fixed");
    let (file, db) = (dir.join("monitor.toml"), dir.join("monitor.db"));
    let url = api.health_url();
    write(&file, &db, &smtp, &busy, &[(&url, "")]);
    let file_arg = file.display().to_string();
    let mut mon = monitor_env(&["run", "--config", &file_arg, "-v"], &[]);
    mon.wait_for_line(&format!("UP target={url} "));
    // Another database: a restart's business, not a reload's.
    write(&file, &dir.join("other.db"), &smtp, &busy, &[(&url, "")]);
    hangup(&mon);
    let refused = mon.wait_for_line("RELOAD REFUSED");
    assert!(refused.contains("--db changed, which takes a restart"), "{refused}");
    let probes = mon.count(&format!("probe ok target={url} "));
    mon.wait_for_count(&format!("probe ok target={url} "), probes + 3);
    let took = mon.terminate(support::DEADLINE).expect("stops on SIGTERM");
    assert!(took < support::DEADLINE);
}
