//! Helpers shared by the end-to-end tests: run a real binary on loopback, learn its port from
//! the start-up line, talk plain HTTP and SMTP over `TcpStream`, and never leave a child behind.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: the machines running these tests may be busy compiling.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running child process; killed (and its stderr shown, if the test failed) on drop.
pub struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    pub address: String,
}

impl Running {
    /// Starts `program` with `args` and waits for its start-up line `"<prefix><address>"`.
    pub fn start(program: &str, args: &[&str], prefix: &str) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (lines_tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let log_writer = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log_writer.lock().expect("log buffer");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut running = Running { child, stdout: lines, stderr: log, address: String::new() };
        let first = running.next_line().expect("a start-up line on stdout");
        running.address = first
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("start-up line {first:?} should start with {prefix:?}"))
            .to_owned();
        running
    }

    /// The next stdout line, `None` on EOF or after [`DEADLINE`].
    pub fn next_line(&self) -> Option<String> {
        self.stdout.recv_timeout(DEADLINE).ok()
    }

    /// Every stdout line until the child closes stdout.
    pub fn rest_of_stdout(&self) -> String {
        let mut text = String::new();
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    text.push_str(&line);
                    text.push('\n');
                }
                Err(RecvTimeoutError::Disconnected) => return text,
                Err(RecvTimeoutError::Timeout) => panic!("stdout still open; so far:\n{text}"),
            }
        }
    }

    /// Waits until the stderr log contains `needle`; panics after [`DEADLINE`].
    pub fn wait_for_log(&self, needle: &str) {
        eventually(&format!("stderr to contain {needle:?}"), || {
            self.log().contains(needle).then_some(())
        });
    }

    pub fn log(&self) -> String {
        self.stderr.lock().expect("log buffer").clone()
    }

    /// Waits for the child to exit on its own; panics after [`DEADLINE`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = &mut self.child;
        eventually("the process to exit", || child.try_wait().expect("try_wait"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- child stderr ---\n{}--- end ---", self.log());
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`; panics with `what` after [`DEADLINE`].
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// Sends one request and reads until the server closes. `None` when the server closed the
/// connection without sending a single byte (or reset it).
pub fn http(address: &str, method: &str, path: &str) -> Option<Reply> {
    let mut stream = send_request(address, method, path);
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && raw.is_empty() => {}
        Err(e) => panic!("{method} {path}: read failed: {e}"),
    }
    (!raw.is_empty()).then(|| parse_reply(&raw))
}

/// Connects and writes a request without reading the reply.
pub fn send_request(address: &str, method: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect to the fake API");
    stream.set_read_timeout(Some(DEADLINE)).expect("set timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write request");
    stream
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response head");
    let mut lines = head.lines();
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    Reply { status, content_type, body: body.to_owned() }
}
