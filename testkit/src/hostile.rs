//! Raw TCP "SMTP servers" that misbehave on purpose, for the mailer's deadline: a tarpit, a
//! trickle, a silent one, and one that hangs once it has accepted a message.
//!
//! Each connection is served on a thread of its own that ends within 100 ms of the client
//! closing its side, so a test can check that the client's threads and sockets are gone
//! without this server's lingering in the counts.

use crate::Log;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a [`HostileSmtp`] misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostility {
    /// Greets with a `220-` continuation line every second, forever: the greeting never ends.
    Tarpit,
    /// Sends `220-` continuation lines one byte every 200 ms, forever.
    Trickle,
    /// Accepts the connection and never says anything.
    Silent,
    /// A correct server up to the end of DATA, which it answers `250`; after that it reads and
    /// never answers again (not even QUIT) until the client closes.
    HangAfterData,
}

/// A misbehaving SMTP server on a loopback port.
pub struct HostileSmtp {
    /// `smtp://127.0.0.1:PORT`
    pub url: String,
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// Connections still open on the server's side.
    pub open: Arc<AtomicUsize>,
    /// For [`Hostility::HangAfterData`]: each message received (the DATA, dot-unstuffed).
    pub messages: Arc<Log<String>>,
}

/// How often a connection thread looks whether its client has gone.
const POLL: Duration = Duration::from_millis(100);

impl HostileSmtp {
    pub fn start(hostility: Hostility) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let messages = Log::new();
        let (accepted2, open2, messages2) =
            (Arc::clone(&accepted), Arc::clone(&open), Arc::clone(&messages));
        std::thread::Builder::new()
            .name("hostile-smtp".into())
            .spawn(move || {
                for conn in listener.incoming().map_while(Result::ok) {
                    accepted2.fetch_add(1, Ordering::SeqCst);
                    open2.fetch_add(1, Ordering::SeqCst);
                    let (open3, messages3) = (Arc::clone(&open2), Arc::clone(&messages2));
                    std::thread::Builder::new()
                        .name("hostile-conn".into())
                        .spawn(move || {
                            serve(conn, hostility, &messages3);
                            open3.fetch_sub(1, Ordering::SeqCst);
                        })
                        .unwrap();
                }
            })
            .unwrap();
        HostileSmtp { url: format!("smtp://{addr}"), addr, accepted, open, messages }
    }
}

fn serve(mut conn: TcpStream, hostility: Hostility, messages: &Log<String>) {
    let _ = conn.set_read_timeout(Some(POLL));
    match hostility {
        Hostility::Tarpit => loop {
            if conn.write_all(b"220-tarpit.test please wait\r\n").is_err()
                || !pause(&mut conn, Duration::from_secs(1))
            {
                break;
            }
        },
        Hostility::Trickle => {
            for byte in b"220-trickle.test slow\r\n".iter().cycle() {
                if conn.write_all(&[*byte]).is_err()
                    || !pause(&mut conn, Duration::from_millis(200))
                {
                    break;
                }
            }
        }
        Hostility::Silent => while pause(&mut conn, Duration::from_secs(1)) {},
        Hostility::HangAfterData => {
            let _ = conn.set_read_timeout(None);
            if let Some(message) = converse_until_data_end(&conn) {
                messages.push(message);
                // Hang: read whatever comes (QUIT) and never answer, until the client closes.
                let _ = std::io::copy(&mut conn, &mut std::io::sink());
            }
        }
    }
}

/// Waits `how_long` reading (and dropping) whatever the client sends; `false` once it closed.
fn pause(conn: &mut TcpStream, how_long: Duration) -> bool {
    let until = Instant::now() + how_long;
    let mut buf = [0u8; 512];
    while Instant::now() < until {
        match conn.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// A minimal, correct SMTP exchange up to the end of DATA (answered 250); the message.
fn converse_until_data_end(conn: &TcpStream) -> Option<String> {
    let mut out = conn.try_clone().ok()?;
    let mut lines = BufReader::new(conn.try_clone().ok()?);
    out.write_all(b"220 hang.test ESMTP\r\n").ok()?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 hang.test\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
            "DATA" => b"354 go ahead\r\n",
            "QUIT" => return None,
            _ => b"500 what?\r\n",
        };
        out.write_all(reply).ok()?;
        if verb == "DATA" {
            break;
        }
    }
    let mut message = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == ".\r\n" {
            break;
        }
        message.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
    out.write_all(b"250 queued, and now I hang\r\n").ok()?;
    Some(message)
}
