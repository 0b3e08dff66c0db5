//! `mail-sink`: a tiny SMTP server for `make demo` and tests that accepts every message and
//! prints it readably on stdout, so the alert e-mails api-monitor sends can be watched live
//! without a real mail server.
//!
//! mailin-embedded runs the SMTP sessions on its own thread pool (its `serve` never returns);
//! `main` waits on a channel for delivered messages and, with `--count N`, exits 0 once N
//! messages arrived and their sessions ended, so the client always got its `250`.

#![forbid(unsafe_code)]

use fake_api::cli::{self, Command, MailSinkArgs};
use fake_api::mail::{self, Envelope};
use mailin_embedded::{response, Handler, Response, Server};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// With `--count`, how long to wait for the last session to say QUIT before exiting anyway.
const QUIT_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = match cli::parse_mail_sink(std::env::args_os().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{}", cli::MAIL_SINK_HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mail-sink: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mail-sink: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the SMTP sessions tell `main`.
enum Event {
    /// A message was printed.
    Delivered,
    /// A session that delivered `delivered` messages has ended (its last reply is written).
    SessionEnded { delivered: u64 },
    /// The SMTP server stopped (only on error: `serve` otherwise never returns).
    ServerStopped(String),
}

fn run(args: MailSinkArgs) -> io::Result<()> {
    let wanted = SocketAddr::new(args.bind, args.port);
    let listener = TcpListener::bind(wanted)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {wanted}: {e}")))?;
    let address = listener.local_addr()?;
    let (events, received) = mpsc::channel();
    let sink = Sink::new(events.clone());
    thread::Builder::new().name("smtp".into()).spawn(move || {
        let mut server = Server::new(sink);
        server.with_name("mail-sink").with_tcp_listener(listener);
        let stopped = match server.serve() {
            Ok(()) => "SMTP server stopped".to_owned(),
            Err(e) => format!("SMTP server failed: {e}"),
        };
        let _ = events.send(Event::ServerStopped(stopped));
    })?;
    announce(address)?;
    wait(&received, args.count)
}

/// The one stdout line tests read to learn the port.
fn announce(address: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "mail-sink listening on smtp://{address}")?;
    out.flush()
}

/// Returns once `count` messages were delivered and their sessions ended (or [`QUIT_GRACE`]
/// after the last delivery); without a count, only when the server stops.
fn wait(received: &Receiver<Event>, count: Option<u64>) -> io::Result<()> {
    let (mut delivered, mut ended) = (0u64, 0u64);
    let mut grace_deadline: Option<Instant> = None;
    loop {
        let event = match grace_deadline {
            None => received.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => {
                received.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            }
        };
        match event {
            Ok(Event::Delivered) => delivered += 1,
            Ok(Event::SessionEnded { delivered: n }) => ended += n,
            Ok(Event::ServerStopped(why)) => return Err(io::Error::other(why)),
            Err(RecvTimeoutError::Timeout) => return Ok(()),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("SMTP server thread vanished"))
            }
        }
        if let Some(count) = count {
            if ended >= count {
                return Ok(());
            }
            if delivered >= count && grace_deadline.is_none() {
                grace_deadline = Some(Instant::now() + QUIT_GRACE);
            }
        }
    }
}

/// The mailin handler: every session gets its own clone, dropped when the session ends.
struct Sink {
    events: Sender<Event>,
    /// Messages printed so far by all sessions, to number them.
    numbered: Arc<AtomicU64>,
    envelope: Option<Envelope>,
    data: Vec<u8>,
    /// Messages this session delivered.
    delivered: u64,
}

impl Sink {
    fn new(events: Sender<Event>) -> Sink {
        Sink {
            events,
            numbered: Arc::new(AtomicU64::new(0)),
            envelope: None,
            data: Vec::new(),
            delivered: 0,
        }
    }
}

impl Clone for Sink {
    /// A fresh session: shares the channel and the numbering, nothing else.
    fn clone(&self) -> Sink {
        Sink {
            events: self.events.clone(),
            numbered: Arc::clone(&self.numbered),
            envelope: None,
            data: Vec::new(),
            delivered: 0,
        }
    }
}

impl Handler for Sink {
    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> Response {
        response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.envelope = Some(Envelope { from: from.to_owned(), to: to.to_vec() });
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let envelope = self.envelope.take().unwrap_or(Envelope { from: String::new(), to: vec![] });
        let number = self.numbered.fetch_add(1, Ordering::SeqCst) + 1;
        let block = mail::render(number, &envelope, &self.data);
        self.data.clear();
        if let Err(e) = print_block(&block) {
            eprintln!("mail-sink: cannot print message {number}: {e}");
            return response::INTERNAL_ERROR;
        }
        self.delivered += 1;
        let _ = self.events.send(Event::Delivered);
        response::OK
    }
}

impl Drop for Sink {
    /// mailin drops a session's handler after writing its last reply, so `main` may exit now
    /// without cutting the client off.
    fn drop(&mut self) {
        if self.delivered > 0 {
            let _ = self.events.send(Event::SessionEnded { delivered: self.delivered });
        }
    }
}

/// Prints one message block in one piece (sessions run in parallel) and flushes it.
fn print_block(block: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(block.as_bytes())?;
    out.flush()
}
