//! Child processes: spawned with their stderr read line by line on a thread into a [`Log`],
//! killed when dropped, stopped with SIGTERM and timed.

use crate::{Log, Result, DEADLINE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Called with each stderr line and the moment it was read.
pub type LineHook = Box<dyn FnMut(Instant, &str) + Send>;

/// What to do with a child's stderr besides collecting its lines in [`Process::stderr`].
#[derive(Default)]
pub struct Capture {
    /// Echo each line on our stderr with this prefix (tests: `"  | "`, shown on failure).
    pub echo: Option<&'static str>,
    /// Also write the lines to this file (kept with the bench's work dir).
    pub tee: Option<PathBuf>,
    /// Also hand each line, stamped when read, to this function.
    pub on_line: Option<LineHook>,
}

impl Capture {
    /// The tests' way: every line echoed as `  | line`.
    pub fn echoed() -> Self {
        Capture { echo: Some("  | "), ..Capture::default() }
    }
}

/// A child process killed when dropped (unless it was waited for), whose stderr lines are
/// collected as they come. Its stdout is piped and handed back by [`Process::spawn`].
pub struct Process {
    pub child: Child,
    pub stderr: Arc<Log<String>>,
    /// A name for messages (`api-monitor`, `fake-api`).
    pub name: String,
    /// The thread copying stderr; it ends when the process has exited and the pipe is drained.
    reader: Option<JoinHandle<()>>,
    reaped: bool,
}

impl Process {
    /// Starts `command` with stdin from /dev/null and stdout and stderr piped.
    pub fn spawn(mut command: Command, capture: Capture) -> Result<(Process, ChildStdout)> {
        let name = command
            .get_program()
            .to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let tee = match &capture.tee {
            Some(path) => Some(
                File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let lines = Log::new();
        let sink = Arc::clone(&lines);
        let Capture { echo, on_line, .. } = capture;
        let (mut tee, mut on_line) = (tee.map(std::io::BufWriter::new), on_line);
        let reader = read_lines(stderr, move |at, line| {
            if let Some(prefix) = echo {
                eprintln!("{prefix}{line}");
            }
            if let Some(file) = tee.as_mut() {
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
            }
            if let Some(hook) = on_line.as_mut() {
                hook(at, line);
            }
            sink.push(line.to_owned());
        });
        Ok((Process { child, stderr: lines, name, reader: Some(reader), reaped: false }, stdout))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; returns it. Panics after [`DEADLINE`].
    pub fn wait_for_line(&self, needle: &str) -> String {
        let lines = self.stderr.wait_until(&format!("a log line with {needle:?}"), |lines| {
            lines.iter().any(|l| l.contains(needle))
        });
        lines.into_iter().find(|l| l.contains(needle)).unwrap()
    }

    /// Waits until `n` stderr lines contain `needle`. Panics after [`DEADLINE`].
    pub fn wait_for_count(&self, needle: &str, n: usize) {
        self.stderr.wait_until(&format!("{n} log lines with {needle:?}"), |lines| {
            lines.iter().filter(|l| l.contains(needle)).count() >= n
        });
    }

    /// How many stderr lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.stderr.read(|lines| lines.iter().filter(|l| l.contains(needle)).count())
    }

    /// The last `n` stderr lines, indented, for an error message.
    pub fn tail(&self, n: usize) -> String {
        self.stderr.read(|lines| {
            let tail = &lines[lines.len().saturating_sub(n)..];
            if tail.is_empty() {
                String::new()
            } else {
                format!("; last lines of {}:\n    {}", self.name, tail.join("\n    "))
            }
        })
    }

    /// An error (with the end of its log) if the child has exited.
    pub fn alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.reaped = true;
                Err(format!("{} exited early ({status}){}", self.name, self.tail(8)))
            }
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`, `STOP`, …); panics if it cannot.
    pub fn signal(&self, name: &str) {
        let signal: Signal =
            format!("SIG{name}").parse().unwrap_or_else(|_| panic!("no signal named {name}"));
        self.send(signal).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sends `signal` to the child.
    pub fn send(&self, signal: Signal) -> Result<()> {
        let pid = i32::try_from(self.pid()).map_err(|_| "pid out of range")?;
        kill(Pid::from_raw(pid), signal).map_err(|e| format!("kill -{signal} {pid}: {e}"))
    }

    /// Waits for the process to exit; panics after [`DEADLINE`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.exit_within(DEADLINE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits up to `limit` for the process to exit (polling every 200 µs, so an exit time
    /// taken around it has that resolution).
    pub fn exit_within(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_micros(200)),
                Ok(None) => return Err(format!("{} did not exit within {limit:?}", self.name)),
                Err(e) => return Err(format!("{}: {e}", self.name)),
            }
        }
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

    /// SIGTERM, then how long the process took to exit (at most `limit`); exiting non-zero is
    /// an error.
    pub fn terminate(&mut self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        self.send(Signal::SIGTERM)?;
        let status = self.exit_within(limit)?;
        let took = started.elapsed();
        if !status.success() {
            return Err(format!(
                "{} exited with {status} after SIGTERM{}",
                self.name,
                self.tail(8)
            ));
        }
        Ok(took)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `pipe` line by line on a thread, handing each line (without its end) to `on_line`
/// with the moment it was read. Invalid UTF-8 is replaced, never a reason to stop.
pub fn read_lines(
    pipe: impl Read + Send + 'static,
    mut on_line: impl FnMut(Instant, &str) + Send + 'static,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => on_line(Instant::now(), String::from_utf8_lossy(&line).trim_end()),
            }
        }
    })
}

/// The first line of `stdout` that starts with `prefix`, without it (e.g. the address in a
/// `… listening on http://ADDR` line); the rest of the pipe is read on a thread by `rest`.
pub fn announced(
    stdout: ChildStdout,
    prefix: &'static str,
    limit: Duration,
    mut rest: impl FnMut(Instant, &str) + Send + 'static,
) -> Result<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut tx = Some(tx);
    read_lines(stdout, move |at, line| match line.strip_prefix(prefix) {
        Some(value) if tx.is_some() => {
            let _ = tx.take().map(|tx| tx.send(value.to_owned()));
        }
        _ => rest(at, line),
    });
    rx.recv_timeout(limit).map_err(|_| format!("no {prefix:?} line within {limit:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_collected_and_sigterm_is_timed() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo started >&2; echo out; exec sleep 30"]);
        let (mut child, stdout) = Process::spawn(command, Capture::default()).unwrap();
        let out = announced(stdout, "ou", Duration::from_secs(30), |_, _| {}).unwrap();
        assert_eq!(out, "t", "the rest of the first stdout line with the prefix");
        assert_eq!(child.wait_for_line("start"), "started");
        child.alive().expect("still running");
        let err = child.terminate(Duration::from_secs(30)).unwrap_err();
        assert!(err.contains("after SIGTERM"), "killed by the signal is not a clean exit: {err}");
        assert!(child.alive().is_err(), "and it is gone");
    }
}
