//! `--listen` against hostile clients: no client, or crowd of clients, may stop the server or
//! the probes.
//!
//! Through the real binary, started under `ulimit -n` (by `sh`, which then `exec`s it, so the
//! limit is the monitor's own and its pid is the child's), watching a real `fake-api`:
//! - 600 idle connections held under a 1,024-descriptor limit (`tiny_http` 0.12 died there:
//!   its accept thread met `EMFILE` and never accepted again), and the same crowd under a
//!   limit so low that accepting does fail with `EMFILE`, which the server must outlive;
//! - a slowloris trickling one header byte a second, which must be cut at the head deadline
//!   while `/healthz` keeps answering;
//! - a 64 MiB header line, which must be refused without the process growing.
//!
//! Then, through the library with small [`Limits`], what the accept thread answers when every
//! worker and queue place is taken.
//!
//! Everything is on loopback with port 0; every wait is on an event with a generous deadline.
//! `LISTEN_HOSTILE_BIN` runs the binary scenarios against another build of `api-monitor` (how
//! the `tiny_http` failure was confirmed).

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_monitor::web::metrics::Registry;
use api_monitor::web::server::{self, Limits, Sources};
use support::{FakeApi, Log, DEADLINE};

/// Idle connections the crowd tests hold open.
const CROWD: usize = 600;

// ---------------------------------------------------------------------------------------------
// A monitor under a descriptor limit.

/// `api-monitor` started by `sh -c 'ulimit -n N && exec …'`, killed when dropped; its stderr
/// lines are collected as they come.
struct Limited {
    child: Child,
    stderr: Arc<Log<String>>,
}

impl Limited {
    /// Starts the monitor on `url` with `--listen 127.0.0.1:0 -v` under `ulimit -n nofile`, and
    /// returns it with the address it serves.
    fn start(nofile: u32, url: &str) -> (Limited, SocketAddr) {
        let bin = std::env::var("LISTEN_HOSTILE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_api-monitor").to_owned());
        let db = support::sqlite("listen-hostile");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(bin)
            .args(["--url", url, "--db", &db, "--interval", "200ms", "--timeout", "2s"])
            .args(["--listen", "127.0.0.1:0", "-v"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sh");
        let stderr = child.stderr.take().expect("piped");
        let lines = Log::new();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                sink.push(line);
            }
        });
        let monitor = Limited { child, stderr: lines };
        let line = monitor.wait_for_line("serving http://");
        let addr = line
            .split("serving http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", monitor.pid()))
            .expect("the monitor's limits");
        let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or("");
        assert!(
            open_files.split_whitespace().nth(3) == Some(&nofile.to_string()),
            "the monitor runs under ulimit -n {nofile}: {open_files:?}"
        );
        (monitor, addr)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_line(&self, needle: &str) -> String {
        let lines = self.stderr.wait_until(&format!("a log line with {needle:?}"), |lines| {
            lines.iter().any(|l| l.contains(needle))
        });
        lines.into_iter().find(|l| l.contains(needle)).expect("found")
    }

    fn count(&self, needle: &str) -> usize {
        self.stderr.snapshot().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits for `more` further log lines with `needle` than there are now.
    fn wait_for_more(&self, needle: &str, more: usize) {
        let wanted = self.count(needle) + more;
        self.stderr.wait_until(&format!("{wanted} log lines with {needle:?}"), |lines| {
            lines.iter().filter(|l| l.contains(needle)).count() >= wanted
        });
    }

    /// Resident memory now, in bytes (`VmRSS`).
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the monitor is running");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line");
        kib * 1024
    }

    /// SIGTERM, then the exit status within [`DEADLINE`].
    fn stop(mut self) -> ExitStatus {
        let status =
            Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the monitor did not exit within {DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// One `GET path` over HTTP/1.0: the status and the body, or the I/O error (connection
/// refused, reset before any answer, or nothing within `wait`). An answer followed by a reset
/// is an answer: the server closes a refused connection without reading all of the request.
fn get(addr: SocketAddr, path: &str, wait: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, wait)?;
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    let sent = write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    if raw.is_empty() {
        sent?;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Asks `/healthz` until it answers 200, panicking after `within` with the last answer.
fn wait_for_healthy(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let answer = get(addr, "/healthz", Duration::from_secs(5));
        if matches!(answer, Ok((200, _))) {
            return;
        }
        assert!(Instant::now() < deadline, "/healthz not 200 within {within:?}: last {answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens `n` connections that send nothing, and keeps them (those the server closes stay
/// open on this side). Returns them and how many could not even connect.
fn crowd(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, usize) {
    let mut open = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(stream) => open.push(stream),
            Err(_) => failed += 1,
        }
    }
    (open, failed)
}

// ---------------------------------------------------------------------------------------------
// Through the binary.

#[test]
fn six_hundred_idle_connections_under_1024_descriptors_stop_neither_server_nor_probes() {
    let api = FakeApi::start(&[]);
    let (monitor, addr) = Limited::start(1024, &api.health_url());
    monitor.wait_for_line("UP target=");
    wait_for_healthy(addr, DEADLINE);

    let (held, failed) = crowd(addr, CROWD);
    assert_eq!(failed, 0, "every connection was accepted or refused, none left hanging");
    eprintln!("{} connections held; probe ok so far: {}", held.len(), monitor.count("probe ok"));
    // While they are held: probing goes on, and /healthz answers at once, 200 or (every worker
    // and queue place taken by the idle ones) the documented 503; and once the idle ones have
    // passed their head deadline, 200 even though the crowd is still open on this side.
    monitor.wait_for_more("probe ok", 5);
    match get(addr, "/healthz", Duration::from_secs(10)) {
        Ok((200, _)) => {}
        Ok((503, body)) => assert!(body.starts_with("busy: "), "a busy 503: {body:?}"),
        other => panic!("/healthz while the crowd is held: {other:?}"),
    }
    wait_for_healthy(addr, DEADLINE);
    monitor.wait_for_more("probe ok", 5);

    drop(held);
    wait_for_healthy(addr, DEADLINE);
    monitor.wait_for_more("probe ok", 5);
    let log = monitor.stderr.snapshot().join("\n");
    assert!(!log.contains("panicked"), "no thread panicked:\n{log}");
    assert_eq!(monitor.stop().code(), Some(0), "a clean exit: the server stopped and joined");
}

#[test]
fn running_out_of_descriptors_while_accepting_is_survived() {
    let api = FakeApi::start(&[]);
    // Low enough that the workers, the queue and the monitor's own files exceed it.
    let (monitor, addr) = Limited::start(40, &api.health_url());
    monitor.wait_for_line("UP target=");
    wait_for_healthy(addr, DEADLINE);

    // Connections until accepting fails (those beyond then wait in the backlog, or time out).
    let mut held = Vec::new();
    while monitor.count("cannot accept a connection") == 0 {
        assert!(held.len() < CROWD, "{CROWD} connections and accepting never failed");
        let (more, _) = crowd(addr, 10);
        held.extend(more);
    }
    let line = monitor.wait_for_line("cannot accept a connection");
    assert!(line.contains("Too many open files"), "EMFILE: {line}");
    eprintln!("accepting failed after {} connections", held.len());
    drop(held);
    wait_for_healthy(addr, DEADLINE);
    monitor.wait_for_more("probe ok", 5);
    // The episode is over at the first accept after a quiet spell: keep asking until then.
    let deadline = Instant::now() + DEADLINE;
    while monitor.count("accepting connections again") == 0 {
        assert!(Instant::now() < deadline, "the end of the episode was never logged");
        let _ = get(addr, "/healthz", Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(200));
    }
    let ended = monitor.wait_for_line("accepting connections again");
    let failed: u64 = ended
        .split("failed_accepts=")
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("a count in {ended:?}"));
    let log = monitor.stderr.snapshot().join("\n");
    assert_eq!(
        log.matches("cannot accept a connection").count(),
        1,
        "one warning for the whole episode of {failed} failed accepts:\n{log}"
    );
    assert!(!log.contains("panicked"), "no thread panicked:\n{log}");
    assert_eq!(monitor.stop().code(), Some(0));
}

#[test]
fn a_slowloris_is_cut_at_the_head_deadline_while_healthz_answers() {
    let api = FakeApi::start(&[]);
    let (monitor, addr) = Limited::start(1024, &api.health_url());
    wait_for_healthy(addr, DEADLINE);

    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.set_read_timeout(Some(DEADLINE)).expect("timeout");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: a").expect("start");
    let cut = Arc::new(AtomicBool::new(false));
    let trickled = Arc::new(AtomicU64::new(1));
    let trickler = {
        let (mut slow, cut, trickled) =
            (slow.try_clone().expect("clone"), Arc::clone(&cut), Arc::clone(&trickled));
        std::thread::spawn(move || {
            // One byte a second, as a slowloris does, until the server has had enough.
            loop {
                std::thread::sleep(Duration::from_secs(1));
                if cut.load(Ordering::SeqCst) || slow.write_all(b"a").is_err() {
                    break;
                }
                trickled.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // The slowloris holds one worker; the others answer.
    wait_for_healthy(addr, DEADLINE);

    let mut answer = Vec::new();
    let read = slow.read_to_end(&mut answer);
    cut.store(true, Ordering::SeqCst);
    trickler.join().expect("trickler");
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("slowloris cut after {} bytes trickled", trickled.load(Ordering::SeqCst));
    match read {
        Ok(_) => assert!(answer.starts_with("HTTP/1.1 408 "), "cut with a 408: {answer:?}"),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the slowloris was not cut within {DEADLINE:?} ({} bytes trickled)",
            trickled.load(Ordering::SeqCst)
        ),
    }
    wait_for_healthy(addr, DEADLINE);
    assert_eq!(monitor.stop().code(), Some(0));
}

#[test]
fn a_64_mib_header_line_is_refused_without_the_process_growing() {
    const HUGE: usize = 64 * 1024 * 1024;
    const RSS_LIMIT: u64 = 64 * 1024 * 1024;
    let api = FakeApi::start(&[]);
    let (monitor, addr) = Limited::start(1024, &api.health_url());
    wait_for_healthy(addr, DEADLINE);
    let before = monitor.rss();

    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (done, peak, pid) = (Arc::clone(&done), Arc::clone(&peak), monitor.pid());
        std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            while !done.load(Ordering::SeqCst) {
                let rss = std::fs::read_to_string(&path).ok().and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                });
                if let Some(kib) = rss {
                    peak.fetch_max(kib * 1024, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_write_timeout(Some(DEADLINE)).expect("timeout");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Huge: ").expect("start");
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    let write_error = loop {
        if sent >= HUGE {
            break None;
        }
        match stream.write_all(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(e) => break Some(e),
        }
    };
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431 ") || write_error.is_some(),
        "refused: a 431, or the connection closed under the sender ({sent} bytes sent, \
         answer {answer:?})"
    );
    assert!(sent < HUGE, "the server stopped reading long before 64 MiB ({sent} bytes sent)");
    eprintln!("header bytes sent before the refusal: {sent}; answer: {:?}", answer.lines().next());
    wait_for_healthy(addr, DEADLINE);
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler");
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("VmRSS before: {} KiB, peak: {} KiB", before / 1024, peak / 1024);
    assert!(
        peak < RSS_LIMIT,
        "VmRSS peaked at {} KiB (before: {} KiB)",
        peak / 1024,
        before / 1024
    );
    assert_eq!(monitor.stop().code(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// Through the library, with small limits.

#[test]
fn when_every_worker_and_queue_place_is_taken_the_accept_thread_answers_503() {
    let sources =
        Sources { registry: Arc::new(Registry::new()), status: Arc::new(|| Ok(String::new())) };
    let limits = Limits {
        workers: 3,
        queue: 1,
        head_deadline: Duration::from_secs(600),
        ..Limits::default()
    };
    let server = server::serve_with("127.0.0.1:0", sources, limits).expect("bind");
    let addr = server.local_addr();
    assert!(matches!(get(addr, "/healthz", DEADLINE), Ok((200, _))));

    // Idle clients take the three workers and the queue place; the accept thread then answers
    // for itself. How many it takes depends on when the workers pick them up: add idle clients
    // until a request is refused.
    let mut idle = Vec::new();
    let refused = loop {
        assert!(idle.len() <= 40, "40 idle clients and still no 503");
        idle.push(TcpStream::connect(addr).expect("connect"));
        let mut probe = TcpStream::connect(addr).expect("connect");
        probe.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        probe.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").expect("send");
        let mut answer = Vec::new();
        match probe.read_to_end(&mut answer) {
            Ok(_) if answer.starts_with(b"HTTP/1.1 200 ") => {} // a worker was still free
            Ok(_) => break String::from_utf8(answer).expect("UTF-8"),
            // Queued behind the idle ones: this one becomes idle too.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                idle.push(probe)
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{refused}");
    assert!(refused.contains("\r\nConnection: close\r\n"), "{refused}");
    assert!(refused.contains("\r\nRetry-After: 1\r\n"), "{refused}");
    assert!(refused.ends_with("\r\n\r\nbusy: too many connections; retry\n"), "{refused}");

    drop(idle);
    wait_for_healthy(addr, DEADLINE);
    server.stop();
}

#[test]
fn the_head_deadline_answers_408_and_a_stop_does_not_wait_for_it() {
    let sources =
        Sources { registry: Arc::new(Registry::new()), status: Arc::new(|| Ok(String::new())) };
    let limits = Limits { head_deadline: Duration::from_millis(300), ..Limits::default() };
    let server = server::serve_with("127.0.0.1:0", sources.clone(), limits).expect("bind");
    let mut silent = TcpStream::connect(server.local_addr()).expect("connect");
    silent.set_read_timeout(Some(DEADLINE)).expect("timeout");
    silent.write_all(b"GET /healthz HTTP/1.1\r\n").expect("half a head");
    let mut answer = String::new();
    silent.read_to_string(&mut answer).expect("an answer, then the close");
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    server.stop();

    // A client in the middle of its head when the server stops: the worker sees the stop
    // between reads, so the port closes without waiting for the (long) deadline.
    let limits = Limits { head_deadline: Duration::from_secs(600), ..Limits::default() };
    let server = server::serve_with("127.0.0.1:0", sources, limits).expect("bind");
    let addr = server.local_addr();
    let mut hanging = TcpStream::connect(addr).expect("connect");
    hanging.set_read_timeout(Some(DEADLINE)).expect("timeout");
    hanging.write_all(b"GET /healthz HTTP/1.1\r\n").expect("half a head");
    wait_for_healthy(addr, DEADLINE);
    server.stop();
    let mut rest = Vec::new();
    let closed = hanging.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0))
            || matches!(&closed, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "closed by the stop, not by the deadline: {closed:?}"
    );
}
