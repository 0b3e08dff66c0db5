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
