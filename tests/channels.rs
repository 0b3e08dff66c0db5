//! Channels beside email, end to end: the real binary, a real fake API, a real SMTP server and
//! real local HTTP receivers standing in for a webhook, Slack and PagerDuty.
//!
//! What the README promises for channels: each notification reaches each of its channels once,
//! through the outbox (in order per target and channel); a receiver that fails (5xx) or hangs
//! is retried like a failing mail server, and holds up neither the email nor the other channels;
//! a refusal (4xx) ends dead after the usual refusals; URLs and routing keys never reach the
//! log.

mod support;

use serde_json::Value;
use std::path::Path;
use support::{monitor_env, temp_dir, FakeApi, SmtpServer};
use testkit::{Received, Receiver, Reply};

/// Writes the config file: one target (the fake API, probed every 200 ms), the webhook and
/// Slack channels for every notification, PagerDuty for the target's (its key from a file).
fn config(dir: &Path, api: &FakeApi, hooks: &Receiver, smtp: &SmtpServer) -> String {
    let key_file = dir.join("pd.key");
    std::fs::write(&key_file, "R0UTING-s3cret\n").unwrap();
    let text = format!(
        "interval = \"200ms\"\n\
         support = [\"oncall@example.com\"]\n\
         smtp = \"{smtp}\"\n\
         db = \"sqlite://{db}\"\n\
         channels = [\"hook\", \"chat\"]\n\
         [[target]]\nurl = \"{api}\"\nchannels = [\"pd\"]\n\
         [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\n\
         [[channel]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"{slack}\"\n\
         [[channel]]\nname = \"pd\"\nkind = \"pagerduty\"\nurl = \"{pd}\"\nrouting_key_file = \"{key}\"\n",
        smtp = smtp.url,
        db = dir.join("monitor.db").display(),
        api = api.health_url(),
        hook = hooks.url("/hook/s3cret-token"),
        slack = hooks.url("/slack/s3cret-token"),
        pd = hooks.url("/pd"),
        key = key_file.display(),
    );
    let path = dir.join("monitor.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The requests to `prefix` that were answered 2xx, bodies parsed.
fn accepted(all: &[Received], prefix: &str) -> Vec<Value> {
    all.iter()
        .filter(|r| r.path.starts_with(prefix) && matches!(r.reply, Reply::Status(200..=299)))
        .map(|r| serde_json::from_str(&r.body).expect("JSON body"))
        .collect()
}

fn wait_accepted(hooks: &Receiver, prefix: &str, n: usize) -> Vec<Value> {
    hooks
        .requests
        .wait_for(
            std::time::Instant::now() + support::DEADLINE,
            &format!("{n} accepted request(s) to {prefix}"),
            |all| {
                let got = accepted(all, prefix);
                (got.len() >= n).then_some(got)
            },
            || Ok(()),
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn each_channel_gets_the_outage_and_the_recovery_once_beside_the_email() {
    let api = FakeApi::start(&[]);
    let hooks = Receiver::start();
    let smtp = SmtpServer::start();
    let dir = temp_dir("channels");
    let file = config(&dir, &api, &hooks, &smtp);
    let mon = monitor_env(&["run", "--config", &file, "-v"], &[]);
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    mon.wait_for_line("OUTAGE target=");
    for prefix in ["/hook", "/slack", "/pd"] {
        wait_accepted(&hooks, prefix, 1);
    }
    api.set_mode("ok");
    mon.wait_for_line("RECOVERED target=");
    let hook = wait_accepted(&hooks, "/hook", 2);
    let slack = wait_accepted(&hooks, "/slack", 2);
    let pd = wait_accepted(&hooks, "/pd", 2);
    let mails = smtp.wait_for(2);
    // A few more intervals: nothing is sent twice.
    let probes = mon.count("probe ok");
    mon.wait_for_count("probe ok", probes + 5);
    let all = hooks.received();
    assert_eq!(all.len(), 6, "one outage and one recovery per channel: {all:#?}");
    assert_eq!(smtp.mails.len(), 2, "and the two emails");
    assert!(mails[0].subject().contains("OUTAGE"), "{}", mails[0].subject());

    assert_eq!(
        (hook[0]["event"].as_str(), hook[1]["event"].as_str()),
        (Some("outage"), Some("recovery"))
    );
    for event in &hook {
        assert_eq!(event["schema"], "api-monitor.event.v1");
        assert_eq!(event["target"], api.health_url().as_str());
        assert_eq!(event["region"], "direct");
        assert_eq!(event["id"].as_str().map(str::len), Some(32), "the notification's key: {event}");
    }
    assert!(hook[1]["duration_seconds"].is_u64(), "the outage's length: {}", hook[1]);
    assert!(hook[0]["reasons"][0].is_string(), "the failure reasons: {}", hook[0]);
    assert!(
        slack[0]["text"].as_str().unwrap().starts_with(":red_circle: *OUTAGE: "),
        "{}",
        slack[0]
    );
    assert!(slack[1]["text"].as_str().unwrap().starts_with(":large_green_circle: *RECOVERED: "));
    assert_eq!(
        (pd[0]["event_action"].as_str(), pd[1]["event_action"].as_str()),
        (Some("trigger"), Some("resolve"))
    );
    assert_eq!(pd[0]["routing_key"], "R0UTING-s3cret", "the key read from its file, trimmed");
    assert_eq!(
        pd[0]["dedup_key"], pd[1]["dedup_key"],
        "the recovery resolves the outage's incident"
    );
    assert!(all.iter().all(|r| r.content_type.as_deref() == Some("application/json")));

    let (status, log) = mon.stop();
    assert!(status.success(), "{status:?}");
    assert!(log.contains("notification sent") && log.contains("via=pagerduty"), "{log}");
    assert!(!log.contains("s3cret"), "no channel URL or routing key in the log");
}

#[test]
fn a_failing_or_hanging_receiver_is_retried_in_order_and_holds_up_no_email() {
    let api = FakeApi::start(&[]);
    let hooks = Receiver::start();
    // The webhook's first three attempts fail: a 503, a hang (the 10 s deadline ends it), a
    // 503; then it accepts. Slack and PagerDuty accept at once; a 404 on PagerDuty would
    // refuse (see the next test).
    let smtp = SmtpServer::start();
    let dir = temp_dir("channels-failing");
    let file = config(&dir, &api, &hooks, &smtp);
    let failing = [Reply::Status(503), Reply::Hang, Reply::Status(503)];
    hooks.answer_on("/hook", &failing, Reply::Status(200));
    let mon = monitor_env(&["run", "--config", &file, "-v"], &[]);
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    mon.wait_for_line("OUTAGE target=");
    // The email does not wait for the webhook's retries.
    smtp.wait_for(1);
    api.set_mode("ok");
    mon.wait_for_line("RECOVERED target=");
    smtp.wait_for(2);
    let hook = wait_accepted(&hooks, "/hook", 2);
    assert_eq!(
        (hook[0]["event"].as_str(), hook[1]["event"].as_str()),
        (Some("outage"), Some("recovery")),
        "in order: the recovery never overtakes its outage"
    );
    let tries: Vec<Reply> =
        hooks.received().iter().filter(|r| r.path.starts_with("/hook")).map(|r| r.reply).collect();
    assert_eq!(
        tries,
        [
            Reply::Status(503),
            Reply::Hang,
            Reply::Status(503),
            Reply::Status(200),
            Reply::Status(200)
        ],
        "the outage tried until accepted, then the recovery once"
    );
    let (_, log) = mon.stop();
    assert!(log.contains("notification NOT delivered"), "each failure is logged");
    assert!(!log.contains("s3cret"), "no channel URL in the log");
}

#[test]
fn a_refusing_receiver_ends_dead_after_three_refusals_and_the_rest_goes_on() {
    let api = FakeApi::start(&[]);
    let hooks = Receiver::start();
    let smtp = SmtpServer::start();
    let dir = temp_dir("channels-refused");
    let file = config(&dir, &api, &hooks, &smtp);
    // Every request is refused (a revoked webhook): 404.
    hooks.answer(&[], Reply::Status(404));
    let mon = monitor_env(&["run", "--config", &file, "-v"], &[]);
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    mon.wait_for_line("notification DEAD");
    smtp.wait_for(1);
    let (_, log) = mon.stop();
    assert!(log.contains("HTTP 404"), "the receiver's answer is in the log");
    assert!(!log.contains("s3cret"));
}
