//! The `fake-api` binary as a child process, its request and mode-change log parsed into
//! waitable [`Log`]s stamped with the moment each line was read.

use crate::process::{announced, Capture, Process};
use crate::{bins, Log, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `GET /health` that fake-api logged.
#[derive(Clone, Debug)]
pub struct Hit {
    pub at: Instant,
    /// The answer it gave (`ok`, `down`, …: the `answer=` field).
    pub answer: String,
}

/// A `mode_change` line: when, and the new mode.
#[derive(Clone, Debug)]
pub struct Flip {
    pub at: Instant,
    pub to: String,
}

/// A running `fake-api` on a free loopback port.
pub struct FakeApi {
    pub process: Process,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub hits: Arc<Log<Hit>>,
    pub flips: Arc<Log<Flip>>,
}

impl FakeApi {
    /// The workspace's `fake-api` (next to the running test) with `args`; panics if it cannot.
    pub fn start(args: &[&str]) -> Self {
        let bin = bins::binary(&bins::bin_dir(), "fake-api").unwrap_or_else(|e| panic!("{e}"));
        Self::launch(&bin, args, Capture::echoed()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `bin --bind 127.0.0.1 --port 0 args…`, its stderr handled as `capture` says.
    pub fn launch(bin: &Path, args: &[&str], mut capture: Capture) -> Result<Self> {
        let mut command = Command::new(bin);
        command.args(["--bind", "127.0.0.1", "--port", "0"]).args(args).env_clear();
        let (hits, flips) = (Log::new(), Log::new());
        let (h, f) = (Arc::clone(&hits), Arc::clone(&flips));
        let mut inner = capture.on_line.take();
        capture.on_line = Some(Box::new(move |at, line: &str| {
            if line.contains(" request method=GET path=/health ") {
                h.push(Hit { at, answer: token(line, "answer=").unwrap_or_default().to_owned() });
            } else if line.contains(" mode_change ") {
                f.push(Flip { at, to: token(line, " to=").unwrap_or_default().to_owned() });
            }
            if let Some(hook) = inner.as_mut() {
                hook(at, line);
            }
        }));
        let (process, stdout) = Process::spawn(command, capture)?;
        let addr = announced(stdout, "fake-api listening on ", Duration::from_secs(15), |_, _| {})
            .map_err(|e| format!("fake-api: {e}{}", process.tail(8)))?;
        Ok(FakeApi { process, base: addr, hits, flips })
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn health_url(&self) -> String {
        format!("{}/health", self.base)
    }

    /// Switches the mode through the control endpoint; panics if it cannot.
    pub fn set_mode(&self, mode: &str) {
        self.post_mode(mode).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `POST /control/<mode>`, answered 200.
    pub fn post_mode(&self, mode: &str) -> Result<()> {
        let addr = self.addr();
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("control: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        write!(
            stream,
            "POST /control/{mode} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("control: {e}"))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| format!("control: {e}"))?;
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(format!("control/{mode} answered {answer:?}"));
        }
        Ok(())
    }

    /// Switches to `mode`; the flip's time is when fake-api logged the change.
    pub fn switch(&self, mode: &str) -> Result<Instant> {
        let posted = Instant::now();
        self.post_mode(mode)?;
        self.flips.wait_for(
            Instant::now() + Duration::from_secs(10),
            "fake-api's mode_change line",
            |flips| flips.iter().find(|f| f.at >= posted && f.to == mode).map(|f| f.at),
            || Ok(()),
        )
    }

    /// Health requests logged since `since`.
    pub fn hits_since(&self, since: Instant) -> usize {
        self.hits.read(|hits| hits.len() - hits.partition_point(|h| h.at < since))
    }
}

/// The value after `key` up to the next space, e.g. `token(line, "target=")`.
pub fn token<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    text[start..].split_whitespace().next()
}
