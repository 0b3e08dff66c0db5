//! A loopback TCP relay that owns the sockets of one SMTP conversation, so the conversation can
//! be cut at a deadline or on demand.
//!
//! `lettre` drives the SMTP protocol on a socket it creates and keeps to itself; its timeout is
//! per socket read, so a server that keeps talking (a `220-` line every few seconds, a byte at a
//! time) keeps a conversation alive forever. The relay puts a socket that *we* own in the path:
//! `lettre` connects to a one-shot listener on 127.0.0.1, the relay connects to the real server
//! and copies bytes both ways, unchanged (TLS stays end to end between `lettre` and the server).
//! Cutting — by the watchdog at the deadline, by [`Cutter::cut`] from any thread, or when either
//! side closes — shuts both sockets down, so whatever `lettre` is blocked in returns at once.
//!
//! Three short-lived threads per conversation, all ended and joined by [`Relay::close`] (or its
//! `Drop`): the watchdog (accepts `lettre`'s connection, connects to the server, then waits for
//! the deadline or a cut) and one copier per direction. Blocking `std` I/O only.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack of the relay threads: they only copy through an 8 KiB buffer.
const STACK: usize = 128 * 1024;
/// How often the watchdog looks for `lettre`'s connection (it arrives within microseconds).
const ACCEPT_POLL: Duration = Duration::from_millis(2);
/// How long [`Relay::close`] waits at most for the watchdog to end (it ends within
/// microseconds of a cut, unless it is inside a TCP connect: see [`State::connecting`]).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why a relay was cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The conversation's deadline passed.
    Deadline,
    /// [`Cutter::cut`] from another thread (shutdown).
    Aborted,
    /// The conversation is over ([`Relay::close`]).
    Closed,
    /// The server closed its side (or writing to it failed).
    ServerClosed,
    /// `lettre` closed its side (after an error of its own, or a QUIT).
    ClientClosed,
    /// The relay could not connect to the server: the error.
    Connect(String),
}

struct State {
    deadline: Instant,
    cut: Option<Cut>,
    /// Every socket of the conversation, to shut down on a cut; emptied when the relay ends so
    /// that no descriptor outlives it.
    sockets: Vec<TcpStream>,
    /// The watchdog is inside a TCP connect to the server, which nothing can interrupt; it is
    /// bounded by the connect timeout and the deadline. [`Relay::close`] does not wait for it:
    /// the watchdog ends by itself when the connect returns (its only socket then closes).
    connecting: bool,
    /// The watchdog has ended (and joined the copiers).
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Only plain fields behind the lock: a panicking holder leaves nothing half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cut(&self, why: Cut) {
        let mut state = self.lock();
        Self::cut_locked(&mut state, why);
        self.changed.notify_all();
    }

    fn cut_locked(state: &mut State, why: Cut) {
        if state.cut.is_none() {
            state.cut = Some(why);
        }
        for socket in &state.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Registers `socket` to be shut down on a cut; `false` (and shut down) if already cut.
    fn add(&self, socket: &TcpStream) -> bool {
        let mut state = self.lock();
        match socket.try_clone() {
            Ok(clone) => state.sockets.push(clone),
            Err(e) => Self::cut_locked(&mut state, Cut::Connect(format!("relay socket: {e}"))),
        }
        if state.cut.is_some() {
            let _ = socket.shutdown(Shutdown::Both);
            return false;
        }
        true
    }

    fn is_cut(&self) -> bool {
        self.lock().cut.is_some()
    }

    fn deadline(&self) -> Instant {
        self.lock().deadline
    }
}

/// Cuts a relay from any thread; cheap to clone.
#[derive(Clone)]
pub(crate) struct Cutter(Arc<Shared>);

impl Cutter {
    /// Shuts the conversation's sockets down now; the first reason given is kept.
    pub(crate) fn cut(&self, why: Cut) {
        self.0.cut(why);
    }
}

/// One conversation's relay: connect `lettre` to [`Relay::local_addr`].
pub(crate) struct Relay {
    shared: Arc<Shared>,
    local: SocketAddr,
    watchdog: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying the first connection to the returned relay's [`local_addr`] to the first
    /// of `server` that answers (each tried for at most `connect_timeout`), until `deadline`.
    ///
    /// [`local_addr`]: Relay::local_addr
    pub(crate) fn start(
        server: Vec<SocketAddr>,
        connect_timeout: Duration,
        deadline: Instant,
    ) -> io::Result<Relay> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                deadline,
                cut: None,
                sockets: Vec::new(),
                connecting: false,
                done: false,
            }),
            changed: Condvar::new(),
        });
        let watched = Arc::clone(&shared);
        let watchdog = thread::Builder::new()
            .name("smtp-relay".into())
            .stack_size(STACK)
            .spawn(move || watch(listener, &server, connect_timeout, &watched))?;
        Ok(Relay { shared, local, watchdog: Some(watchdog) })
    }

    /// Where `lettre` connects.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub(crate) fn cutter(&self) -> Cutter {
        Cutter(Arc::clone(&self.shared))
    }

    /// Why the relay was cut, if it was.
    pub(crate) fn cut_reason(&self) -> Option<Cut> {
        self.shared.lock().cut.clone()
    }

    /// Moves the deadline earlier (never later) to `at`.
    pub(crate) fn shorten(&self, at: Instant) {
        let mut state = self.shared.lock();
        state.deadline = state.deadline.min(at);
        self.shared.changed.notify_all();
    }

    /// Cuts the conversation and waits for the relay's threads to end.
    pub(crate) fn close(self) {
        drop(self);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.cut(Cut::Closed);
        let mut state = self.shared.lock();
        let until = Instant::now() + CLOSE_WAIT;
        while !state.done && !state.connecting {
            let now = Instant::now();
            if now >= until {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, until - now)
                .map_or_else(|p| p.into_inner().0, |(guard, _)| guard);
        }
        let done = state.done;
        drop(state);
        if let Some(watchdog) = self.watchdog.take() {
            if done {
                let _ = watchdog.join();
            }
            // Otherwise the watchdog is still inside a TCP connect to the server, which ends by
            // the deadline at the latest; it then finds the relay cut and ends by itself.
        }
    }
}

/// The watchdog: accepts `lettre`, connects to the server, starts the copiers, and cuts at the
/// deadline unless something else cut first.
fn watch(
    listener: TcpListener,
    server: &[SocketAddr],
    connect_timeout: Duration,
    shared: &Arc<Shared>,
) {
    let mut copiers = Vec::with_capacity(2);
    if let Some(client) = accept(&listener, shared) {
        drop(listener);
        if shared.add(&client) {
            shared.lock().connecting = true;
            shared.changed.notify_all();
            let connected = connect(server, connect_timeout, shared);
            shared.lock().connecting = false;
            match connected {
                Ok(upstream) => {
                    if shared.add(&upstream) {
                        copiers = start_copiers(client, upstream, shared);
                    }
                }
                Err(e) => shared.cut(Cut::Connect(e.to_string())),
            }
        }
    } else {
        drop(listener);
    }
    {
        let mut state = shared.lock();
        while state.cut.is_none() {
            let now = Instant::now();
            if now >= state.deadline {
                Shared::cut_locked(&mut state, Cut::Deadline);
                break;
            }
            let left = state.deadline - now;
            state = shared
                .changed
                .wait_timeout(state, left)
                .map_or_else(|p| p.into_inner().0, |(guard, _)| guard);
        }
    }
    for copier in copiers {
        let _ = copier.join();
    }
    let mut state = shared.lock();
    state.sockets.clear();
    state.done = true;
    shared.changed.notify_all();
}

/// `lettre`'s connection, polled for until it comes, the relay is cut or the deadline passes.
fn accept(listener: &TcpListener, shared: &Shared) -> Option<TcpStream> {
    loop {
        if shared.is_cut() || Instant::now() >= shared.deadline() {
            return None;
        }
        match listener.accept() {
            Ok((client, _)) => return client.set_nonblocking(false).ok().map(|()| client),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                shared.cut(Cut::Connect(format!("relay accept: {e}")));
                return None;
            }
        }
    }
}

/// The first address of `server` that accepts a TCP connection before the deadline.
fn connect(server: &[SocketAddr], timeout: Duration, shared: &Shared) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolved to no address");
    for addr in server {
        if shared.is_cut() {
            break;
        }
        let left = shared.deadline().saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline passed while connecting",
            ));
        }
        match TcpStream::connect_timeout(addr, timeout.min(left).max(Duration::from_millis(1))) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn start_copiers(
    client: TcpStream,
    upstream: TcpStream,
    shared: &Arc<Shared>,
) -> Vec<JoinHandle<()>> {
    let mut copiers = Vec::with_capacity(2);
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        shared.cut(Cut::Connect("relay socket: cannot clone".into()));
        return copiers;
    };
    for (from, to, eof) in
        [(client, upstream, Cut::ClientClosed), (upstream2, client2, Cut::ServerClosed)]
    {
        let shared2 = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("smtp-relay-copy".into())
            .stack_size(STACK)
            .spawn(move || copy(from, to, eof, &shared2));
        match spawned {
            Ok(handle) => copiers.push(handle),
            Err(e) => {
                shared.cut(Cut::Connect(format!("relay thread: {e}")));
                break;
            }
        }
    }
    copiers
}

/// Copies until either side ends; then cuts the relay (which ends the other copier).
///
/// Neither end of the relay may make the conversation wait for an acknowledgement. `lettre`
/// writes a message and its end (`\r\n.\r\n`) in two writes with Nagle's algorithm on (its
/// socket is not ours), so the end goes only once the message is acknowledged, and Linux delays
/// the acknowledgement (40 ms at least) in a conversation that goes back and forth: every email
/// took 40 ms more than it needed. So the relay acknowledges what it reads at once
/// (`TCP_QUICKACK` after each read: the flag does not last, the kernel turns it off again), and
/// writes with Nagle off (`TCP_NODELAY`), so what it forwards in two pieces is not held either.
fn copy(mut from: TcpStream, mut to: TcpStream, eof: Cut, shared: &Shared) {
    let _ = to.set_nodelay(true);
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Best effort: without it, the email goes all the same, only later.
                let _ = socket2::SockRef::from(&from).set_tcp_quickack(true);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    shared.cut(eof);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut copy = conn.try_clone().unwrap();
            let _ = io::copy(&mut conn, &mut copy);
        });
        addr
    }

    #[test]
    fn bytes_go_both_ways_until_the_deadline_cuts() {
        let deadline = Instant::now() + Duration::from_millis(300);
        let relay = Relay::start(vec![echo_server()], Duration::from_secs(1), deadline).unwrap();
        let mut client = TcpStream::connect(relay.local_addr()).unwrap();
        client.write_all(b"hello\r\n").unwrap();
        let mut line = String::new();
        io::BufReader::new(client.try_clone().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "hello\r\n");
        let mut rest = Vec::new();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = client.read_to_end(&mut rest);
        assert!(Instant::now() < deadline + Duration::from_millis(500), "cut at the deadline");
        assert_eq!(relay.cut_reason(), Some(Cut::Deadline));
    }

    /// A server that answers `250 ok` to each line, and `250 queued` to a lone `.` line (the
    /// end of a message: no answer to the message's own lines).
    fn line_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut answer = conn.try_clone().unwrap();
            let (mut in_message, mut line) = (false, String::new());
            let mut lines = io::BufReader::new(conn);
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                let reply: &[u8] = match line.as_str() {
                    ".\r\n" => {
                        in_message = false;
                        b"250 queued\r\n"
                    }
                    "DATA\r\n" => {
                        in_message = true;
                        b"354 go on\r\n"
                    }
                    _ if in_message => b"",
                    _ => b"250 ok\r\n",
                };
                if answer.write_all(reply).is_err() {
                    return;
                }
                line.clear();
            }
        });
        addr
    }

    /// `lettre` writes a message and its end (`\r\n.\r\n`) in two writes on a socket with
    /// Nagle's algorithm on: the end waits until the first write is acknowledged. A relay that
    /// delays its acknowledgements (Linux does, by 40 ms at least, in a conversation that
    /// goes back and forth) or that forwards with Nagle on itself would hold every email's end
    /// that long. Without a wait, one of a few messages at least ends in well under 40 ms on any
    /// machine; with one, none can.
    #[test]
    fn the_end_of_a_message_is_not_held_for_an_acknowledgement() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let relay = Relay::start(vec![line_server()], Duration::from_secs(5), deadline).unwrap();
        let client = TcpStream::connect(relay.local_addr()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut replies = io::BufReader::new(client.try_clone().unwrap());
        let mut writer = client;
        let mut ask = |writer: &mut TcpStream, text: &[u8]| {
            writer.write_all(text).unwrap();
            let mut reply = String::new();
            replies.read_line(&mut reply).unwrap();
            reply
        };
        let mut fastest = Duration::MAX;
        for _ in 0..8 {
            // A conversation as lettre's: commands and answers, then a message in two writes.
            for command in [&b"MAIL FROM:<a@b.c>\r\n"[..], b"RCPT TO:<d@e.f>\r\n"] {
                assert_eq!(ask(&mut writer, command), "250 ok\r\n");
            }
            assert_eq!(ask(&mut writer, b"DATA\r\n"), "354 go on\r\n");
            let started = Instant::now();
            writer.write_all(&[b'x'; 300]).unwrap();
            assert_eq!(ask(&mut writer, b"\r\n.\r\n"), "250 queued\r\n");
            fastest = fastest.min(started.elapsed());
        }
        assert!(fastest < Duration::from_millis(30), "every message's end waited: {fastest:?}");
    }

    #[test]
    fn a_refused_connection_is_reported() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let relay = Relay::start(
            vec![port],
            Duration::from_secs(1),
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap();
        let mut client = TcpStream::connect(relay.local_addr()).unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert!(matches!(relay.cut_reason(), Some(Cut::Connect(_))), "{:?}", relay.cut_reason());
    }
}
