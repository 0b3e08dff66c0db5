//! The runtime's promise, tested by causing the fault: a database that hangs never stops
//! probing. The database here is a real MariaDB behind a forwarder that, once the monitor has
//! started, goes silent: open connections and new ones are accepted and never answered, so
//! every write and reconnect of the MySQL driver waits its full timeout (5–10 s); meanwhile an
//! outage with a reminder every second gives the state owner work all the time.
//!
//! Since the database has a thread of its own (the recorder), even decisions do not wait for
//! it: the outage is logged within a few probes, long before the driver's 10 s timeout.
//!
//! Before the runtime had one state owner, the probe loop took the ledger's lock to post each
//! reminder while the courier held it for the whole reconnect: probing stopped for 10 s at a
//! time and `/healthz` went 503. Now only the state owner waits; workers keep probing and keep
//! `/healthz` alive.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{forwarded_mysql, monitor_env, reserve_port, scratch_db, FakeApi, DEADLINE};

/// Accepts connections and holds them open without a byte: a wedged database server.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The probes counted so far for every result.
fn probes(port: u16) -> u64 {
    let (_, body) = get(port, "/metrics");
    body.lines()
        .filter(|l| l.starts_with("api_monitor_probes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_hanging_database_never_stops_probing_or_liveness() {
    let Some(scratch) = scratch_db::mysql("hang") else { return };
    let (forwarder, db) = forwarded_mysql(&scratch);
    let api = FakeApi::start(&[]);
    let listen = reserve_port();
    let listen_addr = format!("127.0.0.1:{listen}");
    let url = api.health_url();
    let monitor = monitor_env(
        &[
            "run",
            "--url",
            &url,
            "--interval",
            "1s",
            "--timeout",
            "1s",
            "--remind",
            "1s",
            "--db",
            &db,
            "--listen",
            &listen_addr,
        ],
        &[],
    );
    monitor.wait_for_line("UP target=");
    forwarder.hang();
    api.set_mode("down");
    // Only the recorder waits out the database's timeouts: the outage is decided (and would be
    // mailed) at once.
    monitor.wait_for_line("OUTAGE");
    monitor.wait_for_line("DATABASE UNAVAILABLE");
    // From here on the state owner spends most of its time in 10-second reconnect attempts.
    let start = probes(listen);
    let watch_until = Instant::now() + Duration::from_secs(25);
    let mut checks = 0;
    while Instant::now() < watch_until {
        let (status, body) = get(listen, "/healthz");
        assert_eq!(status, 200, "liveness while the database hangs: {body}");
        checks += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(checks > 10, "healthz was checked throughout ({checks} times)");
    // Probes went on at about one a second: at least 15 in 25 s, however loaded the machine.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = probes(listen);
        if now >= start + 15 {
            break;
        }
        assert!(Instant::now() < deadline, "probing stalled: {} probes after 25 s", now - start);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _) = monitor.stop();
    assert!(status.success(), "clean stop while the database hangs");
}
