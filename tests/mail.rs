//! The SMTP mailer against real servers: mail servers that misbehave (a tarpit, a trickle,
//! silence, a hang after DATA) must not hold a conversation past its deadline nor leave a
//! thread or a socket behind; refusals are told apart (per recipient, permanent, transient);
//! a very long subject arrives in lines a server accepts.
//!
//! The tests run one at a time (they count this process's threads and descriptors).

mod support;

use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use api_monitor::config::SmtpSettings;
use api_monitor::notify::mailer::{
    MailError, Mailer, Phase, Refusal, SmtpMailer, QUIT_TIMEOUT, SMTP_TIMEOUT,
};
use api_monitor::notify::message::Email;
use api_monitor::redact::SecretUrl;
use support::{procfs, reserve_port, HostileSmtp, Hostility, SmtpServer, Stage};

const SUPPORT: &str = "oncall@example.com";
/// The deadline the hostile cases get: well under the per-read timeout (10 s), so it is the
/// deadline that ends them.
const CUT: Duration = Duration::from_secs(2);
/// What "promptly" and "within the deadline" allow on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(1);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn mailer(url: &str) -> SmtpMailer {
    let settings = SmtpSettings {
        url: SecretUrl::new(url),
        from: "monitor@example.com".into(),
        to: vec![SUPPORT.into()],
    };
    SmtpMailer::new(&settings, SMTP_TIMEOUT).unwrap()
}

fn email(subject: &str) -> Email {
    Email {
        subject: subject.into(),
        text: format!("{subject}\n\nSomething happened.\n"),
        html: format!("<!DOCTYPE html>\n<html><body><h1>{subject}</h1></body></html>\n"),
        message_id: None,
        event: String::new(),
    }
}

fn outage() -> Email {
    email("[api-monitor] OUTAGE: https://api.example.com/health is down")
}

/// This process's threads and descriptors, and the names of any relay thread.
#[derive(Debug, PartialEq, Eq)]
struct Usage {
    threads: u64,
    fds: u64,
    relay_threads: Vec<String>,
}

fn usage() -> Usage {
    let me = std::process::id();
    let relay_threads = procfs::thread_names(me)
        .unwrap()
        .into_iter()
        .filter(|name| name.starts_with("smtp-relay"))
        .collect();
    Usage { threads: procfs::threads(me).unwrap(), fds: procfs::fds(me).unwrap(), relay_threads }
}

/// The usage once it has not changed for 100 ms (the test harness may still be ending the
/// previous test's thread).
fn settled_usage() -> Usage {
    let mut last = usage();
    let mut same = 0;
    while same < 5 {
        thread::sleep(Duration::from_millis(20));
        let now = usage();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// Waits until threads and descriptors are back to `before` (no more of either), failing after
/// `by`; returns when that was.
fn back_to(before: &Usage, by: Instant) -> Instant {
    loop {
        let now = usage();
        if now.threads <= before.threads && now.fds <= before.fds && now.relay_threads.is_empty() {
            return Instant::now();
        }
        assert!(
            Instant::now() <= by,
            "threads/descriptors not back to {before:?} in time: {now:?}; threads {:?}",
            procfs::thread_names(std::process::id()).unwrap()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A conversation with a server that never completes its greeting ends by the deadline with a
/// transient error, and within a second of the deadline nothing of it is left.
fn cut_at_the_deadline(hostility: Hostility) {
    let _serial = serial();
    let server = HostileSmtp::start(hostility);
    let mut mailer = mailer(&server.url);
    let before = settled_usage();
    let started = Instant::now();
    let deadline = started + CUT;

    let err = mailer.send(&outage(), &[SUPPORT], deadline).unwrap_err();
    let returned = Instant::now();
    let clean = back_to(&before, deadline + SLACK);

    assert!(returned >= deadline, "{hostility:?}: ended by the deadline, not before: {err}");
    assert!(
        returned <= deadline + SLACK,
        "{hostility:?}: returned {:?} after the deadline",
        returned - deadline
    );
    assert!(!err.is_permanent(), "{hostility:?}: a deadline is transient: {err}");
    let text = err.to_string();
    assert!(text.contains("deadline"), "{hostility:?}: the error says why: {text}");
    assert!(text.contains(&server.url), "{hostility:?}: and names the server: {text}");
    assert!(!text.contains('\n'), "one line: {text}");
    assert_eq!(server.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    eprintln!(
        "{hostility:?}: send returned {:?} after start (deadline {CUT:?}), all threads and \
         descriptors gone {:?} after the deadline; error: {text}",
        returned - started,
        clean.saturating_duration_since(deadline)
    );
}

#[test]
fn a_tarpit_greeting_is_cut_at_the_deadline_and_leaves_nothing_behind() {
    cut_at_the_deadline(Hostility::Tarpit);
}

#[test]
fn a_trickling_server_is_cut_at_the_deadline_and_leaves_nothing_behind() {
    cut_at_the_deadline(Hostility::Trickle);
}

#[test]
fn a_silent_server_is_cut_at_the_deadline_before_the_read_timeout() {
    cut_at_the_deadline(Hostility::Silent);
}

#[test]
fn a_server_hanging_after_data_has_accepted_and_finish_is_bounded() {
    let _serial = serial();
    let server = HostileSmtp::start(Hostility::HangAfterData);
    let mut mailer = mailer(&server.url);
    let before = settled_usage();
    let started = Instant::now();

    let accepted = mailer.send(&outage(), &[SUPPORT], started + Duration::from_secs(10)).unwrap();
    let sent = started.elapsed();
    assert!(sent < SLACK, "Ok as soon as the end of DATA was answered: {sent:?}");
    assert!(accepted.refused.is_empty());
    assert_eq!(server.messages.len(), 1, "the server has the message");

    let finishing = Instant::now();
    mailer.finish();
    let finished = finishing.elapsed();
    assert!(finished <= QUIT_TIMEOUT + Duration::from_millis(300), "finish took {finished:?}");
    let clean = back_to(&before, Instant::now() + SLACK);
    eprintln!(
        "hang after DATA: send Ok after {sent:?}; finish (QUIT never answered) took \
         {finished:?}; all gone {:?} later",
        clean.saturating_duration_since(finishing + finished)
    );
}

#[test]
fn abort_from_another_thread_cuts_a_tarpit_within_a_second() {
    let _serial = serial();
    let server = HostileSmtp::start(Hostility::Tarpit);
    let mut mailer = mailer(&server.url);
    let handle = mailer.abort_handle();
    handle.abort(); // nothing in flight: a no-op, the next send is not affected
    let before = settled_usage();
    let accepted = std::sync::Arc::clone(&server.accepted);
    let aborter = thread::spawn(move || {
        while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(1_500)); // well into the tarpit
        handle.abort();
        Instant::now()
    });

    let started = Instant::now();
    let err = mailer.send(&outage(), &[SUPPORT], started + Duration::from_secs(30)).unwrap_err();
    let returned = Instant::now();
    let aborted = aborter.join().unwrap();
    let clean = back_to(&before, returned + SLACK);

    assert!(returned >= aborted, "cut by the abort: {err}");
    assert!(returned - aborted < SLACK, "Err {:?} after abort()", returned - aborted);
    assert!(!err.is_permanent(), "an abort is transient: {err}");
    assert!(err.to_string().contains("aborted"), "{err}");
    eprintln!(
        "abort: send returned {:?} after abort(); all gone {:?} later; error: {err}",
        returned - aborted,
        clean - returned
    );

    // The handle stays valid for the next conversation, which is not aborted.
    let good = SmtpServer::start();
    let mut mailer2 = self::mailer(&good.url);
    mailer.abort_handle().abort();
    mailer2.abort_handle().abort();
    mailer2.send(&outage(), &[SUPPORT], Instant::now() + SMTP_TIMEOUT).unwrap();
    mailer2.finish();
    good.wait_for(1);
}

#[test]
fn one_refused_recipient_does_not_stop_the_others() {
    let _serial = serial();
    let server = SmtpServer::start();
    server.refuse_recipient("gone@example.com", 550);
    let mut mailer = mailer(&server.url);

    let accepted = mailer
        .send(&outage(), &["gone@example.com", SUPPORT], Instant::now() + SMTP_TIMEOUT)
        .unwrap();
    mailer.finish();

    let [Refusal { address, answer }] = accepted.refused.as_slice() else {
        panic!("exactly the refused recipient: {:?}", accepted.refused)
    };
    assert_eq!(address, "gone@example.com");
    assert!(answer.starts_with("550 "), "the server's code and text: {answer:?}");
    assert!(answer.contains("test server refuses this recipient"), "{answer:?}");
    let mails = server.wait_for(1);
    assert_eq!(mails[0].to, [SUPPORT], "the other recipient got the mail");
}

#[test]
fn every_recipient_refused_is_permanent_only_when_every_refusal_is() {
    let _serial = serial();
    let server = SmtpServer::start();
    server.refuse_recipient("gone@example.com", 550);
    server.refuse_recipient(SUPPORT, 553);
    let mut mailer = mailer(&server.url);

    let err = mailer
        .send(&outage(), &["gone@example.com", SUPPORT], Instant::now() + SMTP_TIMEOUT)
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(matches!(err, MailError::Smtp { phase: Phase::RcptTo, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("gone@example.com refused: 550"), "{text}");
    assert!(text.contains(&format!("{SUPPORT} refused: 553")), "{text}");

    server.refuse_recipient("busy@example.com", 452);
    let err = mailer
        .send(&outage(), &["gone@example.com", "busy@example.com"], Instant::now() + SMTP_TIMEOUT)
        .unwrap_err();
    assert!(!err.is_permanent(), "one 4xx refusal may pass later: {err}");
    assert!(server.mails.is_empty());
}

/// Sends one email to a server refusing at `stage` with `code`; the error. (After refusing the
/// end of DATA, mailin stays in its DATA state and takes our QUIT for message text, so that case
/// takes the 500 ms the mailer waits for an answer to QUIT after a failure.)
fn refused_at(stage: Stage, code: u16) -> MailError {
    let server = SmtpServer::start_refusing_at(stage, 1, code);
    let mut mailer = mailer(&server.url);
    let started = Instant::now();
    let err = mailer.send(&outage(), &[SUPPORT], started + SMTP_TIMEOUT).unwrap_err();
    let took = started.elapsed();
    assert!(took < SLACK, "{stage:?} {code}: promptly: {took:?}");
    eprintln!("refused at {stage:?} with {code}: Err after {took:?}: {err}");
    assert!(server.mails.is_empty(), "{stage:?} {code}: nothing delivered");
    // The refusal was for one transaction: the next one goes through.
    mailer.send(&outage(), &[SUPPORT], Instant::now() + SMTP_TIMEOUT).unwrap();
    mailer.finish();
    server.wait_for(1);
    err
}

#[test]
fn a_550_at_mail_from_is_permanent() {
    let _serial = serial();
    let err = refused_at(Stage::MailFrom, 550);
    assert!(err.is_permanent(), "{err}");
    assert!(matches!(err, MailError::Smtp { phase: Phase::MailFrom, .. }), "{err:?}");
    assert!(err.to_string().ends_with("failed at MAIL FROM: 550 test server refuses"), "{err}");
}

#[test]
fn a_554_at_data_is_permanent() {
    let _serial = serial();
    let err = refused_at(Stage::Data, 554);
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().ends_with("failed at DATA: 554 test server refuses"), "{err}");
}

#[test]
fn a_550_at_the_end_of_data_is_permanent() {
    let _serial = serial();
    let err = refused_at(Stage::EndOfData, 550);
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().ends_with("failed at end of DATA: 550 test server refuses"), "{err}");
}

#[test]
fn a_451_is_transient_wherever_it_comes() {
    let _serial = serial();
    for stage in [Stage::MailFrom, Stage::Data, Stage::EndOfData] {
        let err = refused_at(stage, 451);
        assert!(!err.is_permanent(), "{stage:?}: {err}");
        assert!(err.to_string().contains(": 451 test server refuses"), "{stage:?}: {err}");
    }
}

#[test]
fn a_refused_connection_is_transient_and_hides_the_password() {
    let _serial = serial();
    let port = reserve_port();
    let mut mailer = mailer(&format!("smtp://mailer:s3cret@127.0.0.1:{port}"));
    let started = Instant::now();
    let err = mailer.send(&outage(), &[SUPPORT], started + SMTP_TIMEOUT).unwrap_err();
    assert!(started.elapsed() < SLACK, "promptly: {:?}", started.elapsed());
    assert!(!err.is_permanent(), "{err}");
    assert!(matches!(err, MailError::Smtp { phase: Phase::Connect, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("smtp://mailer:***@127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[test]
fn a_2100_character_url_in_the_subject_arrives_in_short_lines_and_whole() {
    let _serial = serial();
    let server = SmtpServer::start();
    let mut mailer = mailer(&server.url);
    let url = format!("https://api.example.com/health/{}", "a1b2c3d4e5".repeat(210));
    assert!(url.len() > 2_100);
    let subject = format!("[api-monitor] OUTAGE: {url} is down (region eu)");
    let mut message = email(&subject);
    message.text = format!("Target: {url}\n");
    message.html = format!("<p><strong>Target:</strong> {url}</p>\n");

    mailer.send(&message, &[SUPPORT], Instant::now() + SMTP_TIMEOUT).unwrap();
    mailer.finish();
    let mails = server.wait_for(1);
    let mail = &mails[0];

    assert!(mail.longest_line() <= 998, "a line of {} octets", mail.longest_line());
    assert!(mail.longest_line() <= 78, "even ≤ 78: {}", mail.longest_line());
    assert_eq!(mail.subject(), subject, "the decoded subject is the original");
    let text = mail.text();
    assert!(text.starts_with(&format!("Target: {url}")), "the text shows the whole URL: {text}");
    let html = mail.part("text/html").unwrap();
    assert!(html.contains(&url), "and so does the HTML: {html}");
}

#[test]
fn a_silent_server_is_cut_by_the_read_timeout_before_a_later_deadline() {
    let _serial = serial();
    let server = HostileSmtp::start(Hostility::Silent);
    let settings = SmtpSettings {
        url: SecretUrl::new(server.url.as_str()),
        from: "monitor@example.com".into(),
        to: vec![SUPPORT.into()],
    };
    let mut mailer = SmtpMailer::new(&settings, Duration::from_secs(1)).unwrap();
    let started = Instant::now();
    let err = mailer.send(&outage(), &[SUPPORT], started + Duration::from_secs(30)).unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(1) + SLACK, "{took:?}");
    assert!(!err.is_permanent(), "{err}");
    assert!(err.to_string().ends_with("no answer within 1s (read timeout)"), "{err}");
    eprintln!("read timeout 1s, deadline 30s: Err after {took:?}: {err}");
}

#[test]
fn starttls_runs_end_to_end_through_the_relay_and_verifies_the_server() {
    // The test server's certificate is self-signed: that the client rejects it shows that the
    // TLS handshake went through the loopback relay to the real server, whose certificate was
    // verified (TLS is between lettre and the server; the relay only copies bytes).
    let _serial = serial();
    let server = SmtpServer::start_starttls();
    let mut mailer = mailer(&format!("{}?tls=required", server.url));
    let started = Instant::now();
    let err = mailer.send(&outage(), &[SUPPORT], started + SMTP_TIMEOUT).unwrap_err();
    assert!(started.elapsed() < SLACK, "{:?}", started.elapsed());
    assert!(matches!(err, MailError::Smtp { phase: Phase::StartTls, .. }), "{err:?}");
    assert!(!err.is_permanent(), "{err}");
    let text = err.to_string();
    assert!(text.contains("invalid peer certificate"), "{text}");
    assert!(server.mails.is_empty());
    eprintln!("STARTTLS with a self-signed certificate: {text}");
}
