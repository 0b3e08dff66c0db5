//! Loopback network helpers: a free port, a TCP forwarder that can be cut (to take a real
//! server "down"), and an HTTP CONNECT proxy (to probe "from another region").

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Armed by [`Forwarder::lose_next_commit_reply`].
    lose_commit_reply: Arc<AtomicBool>,
    /// Set by [`Forwarder::hang`].
    hung: Arc<AtomicBool>,
}

impl Forwarder {
    pub fn start(target: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let lose_commit_reply = Arc::new(AtomicBool::new(false));
        let hung = Arc::new(AtomicBool::new(false));
        let (cut2, live2, lose2, hung2) = (
            Arc::clone(&cut),
            Arc::clone(&live),
            Arc::clone(&lose_commit_reply),
            Arc::clone(&hung),
        );
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for client in listener.incoming().map_while(Result::ok) {
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                if hung2.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else { continue };
                let mut conns = live2.lock().unwrap();
                conns.push(client.try_clone().unwrap());
                conns.push(server.try_clone().unwrap());
                // Set when this connection's client sent a COMMIT while the forwarder was armed:
                // from then on the server's replies on it are swallowed.
                let muted = Arc::new(AtomicBool::new(false));
                let requests = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (lose, mute) = (Arc::clone(&lose2), Arc::clone(&muted));
                let (hang_in, hang_out) = (Arc::clone(&hung2), Arc::clone(&hung2));
                std::thread::spawn(move || {
                    pump(requests.0, requests.1, |chunk| {
                        if find(chunk, b"COMMIT") && lose.swap(false, Ordering::SeqCst) {
                            mute.store(true, Ordering::SeqCst);
                        }
                        !hang_in.load(Ordering::SeqCst)
                    })
                });
                std::thread::spawn(move || {
                    pump(server, client, |_| {
                        !muted.load(Ordering::SeqCst) && !hang_out.load(Ordering::SeqCst)
                    });
                });
            }
        });
        Forwarder { port, cut, live, lose_commit_reply, hung }
    }

    /// From now on the server seems to hang: open connections go silent both ways, and new
    /// ones are accepted and never answered — a database that accepts and never speaks.
    pub fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }

    /// The next `COMMIT` a client sends (plain-text MySQL protocol) reaches the server and is
    /// committed, but the server's reply — and everything after it on that connection — never
    /// reaches the client, which times out: a reply lost in the network.
    pub fn lose_next_commit_reply(&self) {
        self.lose_commit_reply.store(true, Ordering::SeqCst);
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

/// Copies `from` to `to` chunk by chunk while `pass(chunk)` says to forward it (a chunk it
/// refuses is dropped); shuts both down at the end.
fn pump(mut from: TcpStream, mut to: TcpStream, mut pass: impl FnMut(&[u8]) -> bool) {
    use std::io::Read;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if pass(&buf[..n]) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// Whether `needle` occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A forward proxy on loopback that tunnels `CONNECT host:port` — or, while
/// [`ConnectProxy::block`]ed, answers `502 Bad Gateway` as a proxy does when it cannot reach
/// the target from its side of the world.
pub struct ConnectProxy {
    pub url: String,
    blocked: Arc<AtomicBool>,
    pub tunnels: Arc<AtomicUsize>,
}

impl ConnectProxy {
    /// A proxy that tunnels each `CONNECT` to the authority it names.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// A proxy that tunnels every `CONNECT`, whatever authority it names, to `backend`.
    ///
    /// Why: two sites probing the *same* target URL must be able to see different answers, as
    /// when one site's network path to the API breaks. Give each site such a proxy towards its
    /// own fake API, and one URL is up from one site and down from the other.
    pub fn tunnel_to(backend: std::net::SocketAddr) -> Self {
        Self::launch(Some(backend))
    }

    fn launch(backend: Option<std::net::SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let blocked = Arc::new(AtomicBool::new(false));
        let tunnels = Arc::new(AtomicUsize::new(0));
        let (blocked2, tunnels2) = (Arc::clone(&blocked), Arc::clone(&tunnels));
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (blocked, tunnels) = (Arc::clone(&blocked2), Arc::clone(&tunnels2));
                std::thread::spawn(move || {
                    let _ = Self::serve(client, &blocked, &tunnels, backend);
                });
            }
        });
        ConnectProxy { url, blocked, tunnels }
    }

    /// Answers one client: reads its request head and, for a `CONNECT`, tunnels to `backend`
    /// if one is fixed, else to the authority requested.
    fn serve(
        mut client: TcpStream,
        blocked: &AtomicBool,
        tunnels: &AtomicUsize,
        backend: Option<std::net::SocketAddr>,
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
        let upstream = match backend {
            Some(fixed) => TcpStream::connect(fixed),
            None => TcpStream::connect(authority),
        };
        let Ok(mut upstream) = upstream else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A one-shot HTTP server answering `body`, for the proxy tests.
    fn answering(body: &'static str) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().map_while(Result::ok) {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ =
                    write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
        });
        addr
    }

    /// `CONNECT authority` through `proxy`, then (once the tunnel is up: the proxy's reader
    /// would swallow bytes sent early) a GET in the tunnel: the whole answer.
    fn through(proxy: &ConnectProxy, authority: &str) -> String {
        let mut s = TcpStream::connect(proxy.url.trim_start_matches("http://")).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        write!(s, "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::from_utf8_lossy(&head).into_owned();
        let _ = s.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn a_fixed_tunnel_ignores_the_requested_authority() {
        let (a, b) = (answering("from-a"), answering("from-b"));
        let to_b = ConnectProxy::tunnel_to(b);
        let answer = through(&to_b, &a.to_string());
        assert!(answer.starts_with("HTTP/1.1 200 Connection established"), "{answer}");
        assert!(answer.ends_with("from-b"), "asked for a, tunnelled to b: {answer}");
        let plain = ConnectProxy::start();
        assert!(through(&plain, &a.to_string()).ends_with("from-a"), "start() tunnels as asked");
        assert_eq!(to_b.tunnels.load(Ordering::SeqCst), 1);
    }
}
