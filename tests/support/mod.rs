//! Real parts for end-to-end tests: the `fake-api` and `api-monitor` binaries as child
//! processes, and an in-process SMTP server. Everything binds port 0 on loopback, and every
//! wait is on an event with a generous deadline, never a fixed sleep.
//!
//! The generic parts (processes, waitable logs, fake API, SMTP, forwarder, CONNECT proxy) live
//! in the `testkit` crate, shared with `bench/`, and are re-exported here under their old names;
//! what stays here needs the `api_monitor` library (state rows, scratch MySQL databases) or
//! cargo's `CARGO_BIN_EXE_api-monitor`, which only exists in this package's tests.
#![allow(dead_code)] // each test file uses its own subset

pub mod cluster;
pub mod scratch_db;

#[allow(unused_imports)] // each test file uses its own subset
pub use testkit::{
    decode_base64, procfs, reserve_port, temp_dir, ConnectProxy, FakeApi, Forwarder, HostileSmtp,
    Hostility, Log, Mail, Process, SmtpServer, Stage, DEADLINE,
};

use api_monitor::duration::human;
use api_monitor::store::{self, StateRow};
use api_monitor::timestamp::Timestamp;
use testkit::Capture;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Where cargo put this package's binaries (and the workspace's other binaries).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_api-monitor")).parent().unwrap().to_path_buf()
}

/// The `fake-api` binary, built by `make test` (`cargo build --workspace --bins`) beforehand.
pub fn fake_api_bin() -> PathBuf {
    testkit::binary(&bin_dir(), "fake-api").unwrap_or_else(|e| panic!("{e}"))
}

/// Starts `api-monitor` with `args`, logging at debug level so tests can follow every probe.
pub fn monitor(args: &[&str]) -> Process {
    let mut verbose = args.to_vec();
    verbose.push("-v");
    monitor_env(&verbose, &[])
}

/// Starts `api-monitor` with `args` and only `env` (plus `PATH`) in its environment.
pub fn monitor_env(args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api-monitor"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied());
    Process::spawn(command, Capture::echoed()).unwrap_or_else(|e| panic!("{e}")).0
}

/// A scratch MariaDB database reached through a [`Forwarder`] that the test can cut: returns
/// the forwarder and the database URL that goes through it.
pub fn forwarded_mysql(db: &scratch_db::ScratchDb) -> (Forwarder, String) {
    let mut db_url = url::Url::parse(&db.url).unwrap();
    let target = (db_url.host_str().unwrap(), db_url.port().unwrap_or(3306));
    let target = std::net::ToSocketAddrs::to_socket_addrs(&target).unwrap().next().unwrap();
    let forwarder = Forwarder::start(target);
    db_url.set_port(Some(forwarder.port)).unwrap();
    // On loopback the mysql driver would otherwise switch to the server's Unix socket and
    // bypass the forwarder.
    db_url.query_pairs_mut().append_pair("prefer_socket", "false");
    (forwarder, db_url.to_string())
}

/// Runs `api-monitor` to completion; returns (status, stdout, stderr).
pub fn run_monitor(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_api-monitor"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A `sqlite://` URL for a database in a fresh temp directory.
pub fn sqlite(tag: &str) -> String {
    format!("sqlite://{}", temp_dir(tag).join("monitor.db").display())
}

// ---------------------------------------------------------------------------------------------
// Scenarios shared by the SQLite and MySQL end-to-end tests

pub const SUPPORT: &str = "oncall@example.com";

/// Monitor arguments for a fast loop on loopback.
pub fn args<'a>(api: &'a str, db: &'a str, smtp: &'a str) -> Vec<&'a str> {
    vec![
        "--url",
        api,
        "--db",
        db,
        "--smtp",
        smtp,
        "--support",
        SUPPORT,
        "--interval",
        "200ms",
        "--timeout",
        "2s",
        "--failures",
        "2",
        "--successes",
        "2",
        "--from",
        "monitor@example.com",
    ]
}

pub fn rows(db: &str, target: &str) -> Vec<StateRow> {
    store::open(db).unwrap().since(target, "direct", Timestamp::from_millis(0)).unwrap()
}

/// Drives a full outage/recovery cycle against `db`; shared with the MySQL test.
pub fn outage_and_recovery_cycle(db: &str) {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let url = api.health_url();
    let mut mon = monitor(&args(&url, db, &smtp.url));

    mon.wait_for_line("UP target=");
    api.set_mode("down");
    let mails = smtp.wait_for(1);
    assert_eq!(mails[0].subject(), format!("[api-monitor] OUTAGE: {url} is down"));
    assert_eq!(mails[0].to, [SUPPORT]);
    let text = mails[0].text();
    assert!(text.contains("It had been up for"), "outage mail says how long it was up:\n{text}");
    assert!(text.contains("status \"DOWN\""), "outage mail carries the reason:\n{text}");
    assert!(mails[0].part("text/html").is_some(), "an HTML alternative is attached");

    api.set_mode("ok");
    let mails = smtp.wait_for(2);
    let recovered = &mails[1];
    assert!(
        recovered.subject().starts_with(&format!("[api-monitor] RECOVERED: {url} is up after ")),
        "{}",
        recovered.subject()
    );
    assert!(recovered.text().contains("It was down for"), "{}", recovered.text());

    // Several more healthy probes must not produce any further mail.
    let probes = mon.count("probe ok");
    mon.wait_for_count("probe ok", probes + 5);
    assert_eq!(smtp.mails.snapshot().len(), 2, "exactly one email per transition");

    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0));

    let rows = rows(db, &url);
    let states: Vec<_> = rows.iter().map(|r| r.healthy).collect();
    assert_eq!(states, [true, false, true], "first up, outage, recovery");
    assert_eq!(rows[1].reason.as_deref(), Some("status \"DOWN\""));
    assert!(rows[0].timestamp < rows[1].timestamp && rows[1].timestamp < rows[2].timestamp);
    let outage = rows[2].timestamp.since(rows[1].timestamp);
    assert_eq!(
        recovered.subject(),
        format!("[api-monitor] RECOVERED: {url} is up after {}", human(outage)),
        "the recovery subject carries the outage length measured between the two rows"
    );
}

/// `GET path` on the monitor's `--listen` address over HTTP/1.0: (status, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to --listen");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// The address a monitor started with `--listen 127.0.0.1:0` serves on, from its log.
pub fn listen_addr(mon: &Process) -> std::net::SocketAddr {
    let line = mon.wait_for_line("serving http://");
    line.split("serving http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}
