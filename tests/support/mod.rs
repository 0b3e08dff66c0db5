//! Real parts for end-to-end tests: the `fake-api` and `api-monitor` binaries as child
//! processes, and an in-process SMTP server (`mailin-embedded`). Everything binds port 0 on
//! loopback, and every wait is on an event with a generous deadline, never a fixed sleep.
#![allow(dead_code)] // each test file uses its own subset

pub mod scratch_db;

use api_monitor::duration::human;
use api_monitor::store::{self, StateRow};
use api_monitor::timestamp::Timestamp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any awaited event may take on a loaded 2-core machine before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A shared list that a test can wait on.
pub struct Log<T> {
    items: Mutex<Vec<T>>,
    grew: Condvar,
}

impl<T: Clone> Log<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Log { items: Mutex::new(Vec::new()), grew: Condvar::new() })
    }

    pub fn push(&self, item: T) {
        self.items.lock().unwrap().push(item);
        self.grew.notify_all();
    }

    pub fn snapshot(&self) -> Vec<T> {
        self.items.lock().unwrap().clone()
    }

    /// Waits until `ready` holds for the items, or panics after [`DEADLINE`] with `what`.
    pub fn wait_until(&self, what: &str, ready: impl Fn(&[T]) -> bool) -> Vec<T> {
        let deadline = Instant::now() + DEADLINE;
        let mut items = self.items.lock().unwrap();
        while !ready(&items) {
            let now = Instant::now();
            assert!(now < deadline, "timed out after {DEADLINE:?} waiting for {what}");
            items = self.grew.wait_timeout(items, deadline - now).unwrap().0;
        }
        items.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP

/// One message as the SMTP server received it.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// A header's value, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push_str(line.trim_start_matches(['\t']));
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((key, v)) = line.split_once(':') {
                if key.eq_ignore_ascii_case(name) {
                    value = Some(v.trim_start().to_string());
                }
            }
        }
        value
    }

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The decoded body of the first part with this content type (`text/plain`, `text/html`).
    pub fn part(&self, content_type: &str) -> Option<String> {
        for part in self.data.split("\r\n--") {
            let Some((head, body)) = part.split_once("\r\n\r\n") else { continue };
            let lower = head.to_ascii_lowercase();
            if !lower.contains(&format!("content-type: {content_type}")) {
                continue;
            }
            let body = body.rsplit_once("\r\n").map_or(body, |(b, _)| b);
            return Some(if lower.contains("content-transfer-encoding: quoted-printable") {
                decode_quoted_printable(body)
            } else if lower.contains("content-transfer-encoding: base64") {
                decode_base64(body)
            } else {
                body.to_string()
            });
        }
        None
    }

    pub fn text(&self) -> String {
        self.part("text/plain").unwrap_or_else(|| panic!("no text/plain part in {:?}", self.data))
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text of a base64 body (line breaks ignored); lossy, for assertions.
pub fn decode_base64(body: &str) -> String {
    use base64::Engine as _;
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// How the test SMTP server answers `MAIL FROM`: it can refuse the first few transactions,
/// or all of them until told otherwise.
#[derive(Debug)]
struct Policy {
    /// Transactions still to refuse (then it accepts).
    refuse_next: AtomicUsize,
    /// While false, every transaction is refused.
    accepting: AtomicBool,
    /// The SMTP code of a refusal (4xx transient, 5xx permanent).
    code: u16,
}

#[derive(Clone)]
struct Collector {
    mails: Arc<Log<Mail>>,
    current: Option<Mail>,
    policy: Arc<Policy>,
}

impl mailin_embedded::Handler for Collector {
    fn mail(
        &mut self,
        _ip: std::net::IpAddr,
        _domain: &str,
        _from: &str,
    ) -> mailin_embedded::Response {
        let p = &self.policy;
        let refuse_one = p
            .refuse_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse_one || !p.accepting.load(Ordering::SeqCst) {
            return mailin_embedded::Response::custom(p.code, "test server refuses".to_string());
        }
        mailin_embedded::response::OK
    }

    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.current = Some(Mail { from: from.to_string(), to: to.to_vec(), data: String::new() });
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(mail) = self.current.as_mut() {
            mail.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        if let Some(mail) = self.current.take() {
            self.mails.push(mail);
        }
        mailin_embedded::response::OK
    }
}

/// A real SMTP server on a loopback port, collecting every message it accepts.
pub struct SmtpServer {
    pub url: String,
    pub mails: Arc<Log<Mail>>,
    policy: Arc<Policy>,
}

impl SmtpServer {
    /// A server that accepts everything.
    pub fn start() -> Self {
        Self::start_refusing(0, 451)
    }

    /// A server that refuses the first `n` transactions with `code`, then accepts.
    pub fn start_refusing(n: usize, code: u16) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), n, code)
    }

    /// A server on `listener` (e.g. a port reserved with [`reserve_port`]).
    pub fn start_on(listener: TcpListener, n: usize, code: u16) -> Self {
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let mails = Log::new();
        let policy = Arc::new(Policy {
            refuse_next: AtomicUsize::new(n),
            accepting: AtomicBool::new(true),
            code,
        });
        let handler =
            Collector { mails: Arc::clone(&mails), current: None, policy: Arc::clone(&policy) };
        let mut server = mailin_embedded::Server::new(handler);
        server.with_name("sink.test").with_num_threads(2).with_tcp_listener(listener);
        std::thread::spawn(move || {
            if let Err(e) = server.serve() {
                eprintln!("test SMTP server stopped: {e}");
            }
        });
        SmtpServer { url, mails, policy }
    }

    /// While `false`, every transaction is refused (with the server's code).
    pub fn set_accepting(&self, accepting: bool) {
        self.policy.accepting.store(accepting, Ordering::SeqCst);
    }

    /// Waits for the `n`th message and returns all received so far.
    pub fn wait_for(&self, n: usize) -> Vec<Mail> {
        self.mails.wait_until(&format!("{n} email(s)"), |m| m.len() >= n)
    }
}

/// A loopback port that is free now (nothing listens on it until someone binds it again).
pub fn reserve_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// A TCP forwarder that a test can cut and restore, to take a real server "down"

/// Forwards connections from a loopback port to `target`; [`Forwarder::cut`] drops every
/// connection and refuses new ones (they are accepted and closed at once) until
/// [`Forwarder::restore`].
pub struct Forwarder {
    pub port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    pub fn start(target: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, live2) = (Arc::clone(&cut), Arc::clone(&live));
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else { continue };
                let mut conns = live2.lock().unwrap();
                conns.push(client.try_clone().unwrap());
                conns.push(server.try_clone().unwrap());
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Forwarder { port, cut, live }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.live.lock().unwrap().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed when dropped, whose stderr lines are collected as they come.
pub struct Process {
    pub child: Child,
    pub stderr: Arc<Log<String>>,
    /// The thread copying stderr; it ends when the process has exited and the pipe is drained.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    fn spawn(mut command: Command) -> (Self, std::process::ChildStdout) {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Log::new();
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                sink.push(line);
            }
        });
        (Process { child, stderr: lines, reader: Some(reader) }, stdout)
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let lines = self.stderr.wait_until(&format!("a log line with {needle:?}"), |lines| {
            lines.iter().any(|l| l.contains(needle))
        });
        lines.into_iter().find(|l| l.contains(needle)).unwrap()
    }

    /// Waits until `n` stderr lines contain `needle`.
    pub fn wait_for_count(&self, needle: &str, n: usize) {
        self.stderr.wait_until(&format!("{n} log lines with {needle:?}"), |lines| {
            lines.iter().filter(|l| l.contains(needle)).count() >= n
        });
    }

    pub fn count(&self, needle: &str) -> usize {
        self.stderr.snapshot().iter().filter(|l| l.contains(needle)).count()
    }

    /// SIGTERM, then the exit status (within [`DEADLINE`]) and everything written to stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let status = self.wait_exit();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stderr reader ends with the process");
        }
        (status, self.stderr.snapshot().join("\n"))
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, panicking after [`DEADLINE`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit within {DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where cargo put this package's binaries (and the workspace's other binaries).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_api-monitor")).parent().unwrap().to_path_buf()
}

/// The `fake-api` binary, built by `make test` (`cargo build --workspace --bins`) beforehand.
pub fn fake_api_bin() -> PathBuf {
    let path = bin_dir().join("fake-api");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p fake-api` first (`make test` does)",
        path.display()
    );
    path
}

/// A running `fake-api` on a free loopback port.
pub struct FakeApi {
    pub process: Process,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl FakeApi {
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(fake_api_bin());
        command.args(["--bind", "127.0.0.1", "--port", "0"]).args(args);
        let (process, stdout) = Process::spawn(command);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("fake-api prints its address");
        let base = line
            .trim()
            .strip_prefix("fake-api listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from fake-api: {line:?}"))
            .to_string();
        FakeApi { process, base }
    }

    pub fn health_url(&self) -> String {
        format!("{}/health", self.base)
    }

    /// Switches the mode through the control endpoint.
    pub fn set_mode(&self, mode: &str) {
        let addr = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST /control/{mode} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "control/{mode} answered {answer:?}");
    }
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
    Process::spawn(command).0
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

/// A fresh directory under the system temp dir, unique to this test.
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("api-monitor-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

// ---------------------------------------------------------------------------------------------
// An HTTP CONNECT proxy, to probe "from another region"

/// A forward proxy on loopback that tunnels `CONNECT host:port` — or, while
/// [`ConnectProxy::block`]ed, answers `502 Bad Gateway` as a proxy does when it cannot reach
/// the target from its side of the world.
pub struct ConnectProxy {
    pub url: String,
    blocked: Arc<AtomicBool>,
    pub tunnels: Arc<AtomicUsize>,
}

impl ConnectProxy {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let blocked = Arc::new(AtomicBool::new(false));
        let tunnels = Arc::new(AtomicUsize::new(0));
        let (blocked2, tunnels2) = (Arc::clone(&blocked), Arc::clone(&tunnels));
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (blocked, tunnels) = (Arc::clone(&blocked2), Arc::clone(&tunnels2));
                std::thread::spawn(move || {
                    let _ = Self::serve(client, &blocked, &tunnels);
                });
            }
        });
        ConnectProxy { url, blocked, tunnels }
    }

    fn serve(
        mut client: TcpStream,
        blocked: &AtomicBool,
        tunnels: &AtomicUsize,
    ) -> std::io::Result<()> {
        let mut reader = BufReader::new(client.try_clone()?);
        let mut request = String::new();
        reader.read_line(&mut request)?;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
                break;
            }
        }
        let mut parts = request.split_whitespace();
        let (Some("CONNECT"), Some(authority)) = (parts.next(), parts.next()) else {
            return client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
        };
        if blocked.load(Ordering::SeqCst) {
            return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        }
        let Ok(mut upstream) = TcpStream::connect(authority) else {
            return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        };
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        tunnels.fetch_add(1, Ordering::SeqCst);
        let mut back = upstream.try_clone()?;
        let mut client_reader = reader.into_inner();
        let mut client_writer = client;
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut client_reader, &mut upstream);
            let _ = upstream.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut back, &mut client_writer);
        let _ = client_writer.shutdown(std::net::Shutdown::Both);
        let _ = up.join();
        Ok(())
    }

    /// While blocked, every CONNECT is answered `502 Bad Gateway`.
    pub fn block(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
    }
}
