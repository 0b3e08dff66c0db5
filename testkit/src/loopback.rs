//! In-process loopback servers for load tests, cheaper than a child per target:
//! [`HealthServer`] answers every `GET` of any path as a healthy API and records when each
//! path was hit; [`BlackHole`] accepts connections and never answers.

use crate::{Log, Result};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request a [`HealthServer`] answered: its path (query included) and when the
/// connection was accepted, which is as close to the client's probe start as the server sees.
#[derive(Clone, Debug)]
pub struct PathHit {
    pub at: Instant,
    pub path: String,
}

/// Threads accepting connections of one [`HealthServer`].
const ACCEPTORS: usize = 4;

const HEALTHY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Content-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"OK\"}";

/// Answers every request, whatever its path, `200 {"status":"OK"}` and closes the connection.
/// A few threads accept (and stamp); `workers` threads read, record and answer.
pub struct HealthServer {
    pub addr: SocketAddr,
    pub hits: Arc<Log<PathHit>>,
    stopping: Arc<AtomicBool>,
}

impl HealthServer {
    pub fn start(workers: usize) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let hits = Log::new();
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<(Instant, TcpStream)>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let (rx, hits) = (Arc::clone(&rx), Arc::clone(&hits));
            thread::spawn(move || serve(&rx, &hits));
        }
        // Several threads accept (and stamp), so that a stamp is late only when all of them
        // are kept off the CPU, e.g. by a monitor with thousands of runnable threads.
        for _ in 0..ACCEPTORS {
            let listener = listener.try_clone().map_err(|e| format!("listener: {e}"))?;
            let (tx, stop) = (tx.clone(), Arc::clone(&stopping));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match stream {
                        Ok(stream) => {
                            if tx.send((Instant::now(), stream)).is_err() {
                                break;
                            }
                        }
                        // Out of file descriptors, for instance: the client sees a refused or
                        // stalled connect, the bench a missing hit.
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Ok(HealthServer { addr, hits, stopping })
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many times each path was hit in `[from, to)`; paths never hit are absent.
    ///
    /// For checks that *each* target was probed so often, which a total cannot show: one
    /// target probed twice and another not at all add up the same.
    pub fn hits_per_path(
        &self,
        from: Instant,
        to: Instant,
    ) -> std::collections::HashMap<String, usize> {
        self.hits.read(|hits| {
            let mut counts = std::collections::HashMap::new();
            for hit in hits.iter().filter(|h| h.at >= from && h.at < to) {
                *counts.entry(hit.path.clone()).or_insert(0) += 1;
            }
            counts
        })
    }

    /// Requests answered since `since`.
    pub fn hits_since(&self, since: Instant) -> usize {
        // Workers push in the order they finish, so the stamps are only nearly sorted.
        self.hits.read(|hits| hits.iter().filter(|h| h.at >= since).count())
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in 0..ACCEPTORS {
            let _ = TcpStream::connect(self.addr); // wakes an accept loop so it sees the flag
        }
    }
}

/// A worker: takes accepted connections off the queue until the accept loop has ended.
fn serve(queue: &Mutex<Receiver<(Instant, TcpStream)>>, hits: &Log<PathHit>) {
    loop {
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((at, mut stream)) = next else { return };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        if let Some(path) = read_path(&mut stream) {
            hits.push(PathHit { at, path });
            let _ = stream.write_all(HEALTHY);
        }
    }
}

/// Reads a request head (up to its blank line, at most 8 KiB) and returns the path of its
/// request line; `None` when the client sent no complete head.
fn read_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            return None;
        }
    }
    let line = head.split(|&b| b == b'\r').next()?;
    let line = String::from_utf8_lossy(line);
    line.split(' ').nth(1).map(str::to_owned)
}

/// Accepts connections and never reads or answers: a host that swallows probes until the
/// client's own deadline. Each connection is closed `hold` after it was accepted (by then the
/// client has given up), so file descriptors do not pile up.
pub struct BlackHole {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
}

impl BlackHole {
    pub fn start(hold: Duration) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (count, stop) = (Arc::clone(&accepted), Arc::clone(&stopping));
        thread::spawn(move || {
            let mut held: VecDeque<(Instant, TcpStream)> = VecDeque::new();
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let now = Instant::now();
                while held.front().is_some_and(|(at, _)| now.duration_since(*at) >= hold) {
                    held.pop_front();
                }
                match stream {
                    Ok(stream) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        held.push_back((now, stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(BlackHole { addr, accepted, stopping })
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_answered_healthy_and_recorded() {
        let server = HealthServer::start(2).unwrap();
        for path in ["/t/1", "/t/2?x=y"] {
            let mut s = TcpStream::connect(server.addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            assert!(answer.ends_with(r#"{"status":"OK"}"#), "healthy JSON: {answer:?}");
        }
        let hits = server.hits.wait_until("two hits", |h| h.len() == 2);
        let counts = server.hits_per_path(hits[0].at, Instant::now() + Duration::from_secs(1));
        assert_eq!((counts["/t/1"], counts["/t/2?x=y"], counts.len()), (1, 1, 2), "per path");
        let paths: Vec<_> = hits.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(paths, ["/t/1", "/t/2?x=y"], "paths with their query, in order");
    }

    #[test]
    fn a_black_hole_accepts_and_stays_silent() {
        let hole = BlackHole::start(Duration::from_secs(60)).unwrap();
        let mut s = TcpStream::connect(hole.addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 16];
        let err = s.read(&mut buf).expect_err("no answer, no close");
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
    }
}
