//! Black holes through the real binary: peers that accept a connection and then stall — a TLS
//! server that never says a word, a proxy that never answers CONNECT, headers trickled forever,
//! a body that never comes. Each probe must end at its deadline and take its thread and socket
//! with it, so a monitor left facing one for hours keeps a flat thread and descriptor count.
//!
//! Each case runs `api-monitor run --interval 1s --timeout 1s` for about 30 s and samples
//! `/proc/PID/task` and `/proc/PID/fd`: the highest count over the last 20 s may exceed the
//! count at about 10 s by a small constant only. An HTTP client that abandoned one helper
//! thread (or socket) per probe would add about 20 of each in that window.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{monitor_env, sqlite, Process};

/// How long the monitor faces the black hole.
const RUN: Duration = Duration::from_secs(32);
/// When the baseline is taken (start-up threads and the first probes are settled by then).
const BASELINE_AT: Duration = Duration::from_secs(10);
/// Growth tolerated over the baseline: a probe in flight holds a socket (and, while resolving a
/// name, a short-lived thread); a flush of the log or the database may hold another.
const SLACK: usize = 4;

/// A loopback listener whose every connection is handed to `serve` on its own thread; the
/// connections are also kept open here, so a socket the monitor forgets stays open too.
fn black_hole(serve: fn(TcpStream) -> std::io::Result<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            if let Ok(copy) = stream.try_clone() {
                held.lock().unwrap().push(copy);
            }
            thread::spawn(move || serve(stream));
        }
    });
    address
}

/// Accepts and never says a word (nor reads a byte).
fn silent(_stream: TcpStream) -> std::io::Result<()> {
    Ok(())
}

/// Reads the request head, so the next step answers a complete request.
fn read_head(stream: &TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    Ok(())
}

/// A status line, then one short header line every 200 ms, forever (until the probe hangs up).
fn endless_headers(mut stream: TcpStream) -> std::io::Result<()> {
    read_head(&stream)?;
    stream.write_all(b"HTTP/1.1 200 OK\r\n")?;
    loop {
        thread::sleep(Duration::from_millis(200));
        stream.write_all(b"X-Wait: a\r\n")?;
    }
}

/// Complete headers announcing a body of 100 bytes, then nothing until the probe hangs up.
fn stalled_body(mut stream: TcpStream) -> std::io::Result<()> {
    read_head(&stream)?;
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"st",
    )?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).map(drop)
}

/// Entries in `/proc/PID/<what>` (`task`: threads, `fd`: open descriptors).
fn count(pid: u32, what: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/{what}")).map_or(0, Iterator::count)
}

/// Runs the monitor against `url` (from `--region` `region` when given) for [`RUN`] and asserts
/// that its threads and descriptors stay flat after [`BASELINE_AT`]; returns the process.
fn assert_flat(url: &str, region: Option<&str>, tag: &str) -> Process {
    let db = sqlite(tag);
    let mut args = vec!["run", "--url", url, "--interval", "1s", "--timeout", "1s", "--db", &db];
    if let Some(region) = region {
        args.extend(["--region", region]);
    }
    let monitor = monitor_env(&args, &[]);
    let pid = monitor.child.id();
    let started = Instant::now();
    let (mut baseline, mut highest) = (None, (0, 0));
    let mut samples = Vec::new();
    while started.elapsed() < RUN {
        thread::sleep(Duration::from_millis(250));
        let now = (count(pid, "task"), count(pid, "fd"));
        samples.push((started.elapsed().as_millis(), now));
        match baseline {
            None if started.elapsed() >= BASELINE_AT => baseline = Some(now),
            None => {}
            Some(_) => highest = (highest.0.max(now.0), highest.1.max(now.1)),
        }
    }
    let (threads, fds) = baseline.expect("the run is longer than the baseline delay");
    assert!(threads > 0 && fds > 0, "the monitor is still running: {samples:?}");
    assert!(
        highest.0 <= threads + SLACK,
        "threads grew from {threads} at {BASELINE_AT:?} to {}: {samples:?}",
        highest.0
    );
    assert!(
        highest.1 <= fds + SLACK,
        "descriptors grew from {fds} at {BASELINE_AT:?} to {}: {samples:?}",
        highest.1
    );
    monitor
}

#[test]
fn a_silent_tls_server_leaks_nothing() {
    let address = black_hole(silent);
    let monitor = assert_flat(&format!("https://{address}/health"), None, "bh-tls");
    assert!(monitor.count("timeout after 1s") > 0, "the probes time out");
}

#[test]
fn a_proxy_that_never_answers_connect_blinds_its_region_and_leaks_nothing() {
    let proxy = black_hole(silent);
    let region = format!("x=http://{proxy}");
    // The target is never reached: the proxy never opens the tunnel.
    let monitor = assert_flat("http://127.0.0.1:9/health", Some(&region), "bh-proxy");
    assert!(monitor.count("BLIND target=") > 0, "the region is blind");
    assert_eq!(monitor.count("OUTAGE"), 0, "a silent proxy is not an outage of the API");
}

#[test]
fn endless_headers_leak_nothing() {
    let address = black_hole(endless_headers);
    let monitor = assert_flat(&format!("http://{address}/health"), None, "bh-headers");
    assert!(monitor.count("timeout after 1s") > 0, "the probes time out");
}

#[test]
fn a_stalled_body_leaks_nothing() {
    let address = black_hole(stalled_body);
    let monitor = assert_flat(&format!("http://{address}/health"), None, "bh-body");
    assert!(monitor.count("timeout after 1s while reading the body") > 0, "the probes time out");
}

/// `api-monitor` with `args`, started by `sh -c 'ulimit -n N && exec …'` so the open-file
/// limit is its own.
fn monitor_with_nofile(nofile: u32, args: &[&str]) -> Process {
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_api-monitor"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    Process::spawn(command, testkit::process::Capture::echoed()).unwrap_or_else(|e| panic!("{e}")).0
}

#[test]
fn probes_in_flight_stay_within_the_open_file_limit_or_a_warning_says_why_not() {
    // 300 targets that hang for their whole timeout would want 300 sockets at once; under a
    // limit of 256 only 192 fit beside the rest (64 kept free). The default keeps within it and
    // says so; an explicit --concurrency above it is taken, with a warning.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = std::env::temp_dir().join(format!("nofile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("monitor.toml");
    let mut text = String::from("interval = \"1s\"\ntimeout = \"1s\"\n");
    for n in 0..300 {
        let address = hole.local_addr().unwrap();
        text.push_str(&format!("\n[[target]]\nurl = \"http://{address}/h{n}\"\n"));
    }
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap().to_owned();

    let db = sqlite("nofile");
    let mut by_default = monitor_with_nofile(256, &["--config", &config, "--db", &db, "-v"]);
    by_default.wait_for_line("probes in flight at most=192 source=default");
    by_default.wait_for_line(
        "the open-file limit leaves room for 192 probes in flight, and 302 may be needed \
         (default); the default stays within it, so probes may start late",
    );
    // The cap binds (300 hanging targets, 192 places): late starts, and every probe that ends
    // ends in its own timeout, none for want of a descriptor.
    by_default.wait_for_line("probes are starting late");
    by_default.wait_for_count("reason=\"timeout after 1s\"", 250);
    by_default.signal("TERM");
    assert_eq!(by_default.wait_exit().code(), Some(0));
    assert_eq!(by_default.count("Too many open files"), 0, "{}", by_default.tail(20));

    let db = sqlite("nofile-explicit");
    let mut explicit =
        monitor_with_nofile(256, &["--config", &config, "--db", &db, "--concurrency", "250"]);
    explicit.wait_for_line("probes in flight at most=250 source=--concurrency");
    explicit.wait_for_line(
        "the open-file limit leaves room for 192 probes in flight, and 250 may be needed \
         (--concurrency); probes past it fail with \"Too many open files\": lower --concurrency",
    );
    explicit.signal("TERM");
    assert_eq!(explicit.wait_exit().code(), Some(0));
    drop(hole);
}
