//! [`Receiver`]: an in-process HTTP server standing in for a webhook, Slack or PagerDuty
//! endpoint. It records every request (path, content type, body) and answers as told: a status
//! for each request in turn, then a default, or never (it reads the request and hangs).

use crate::log::Log;
use crate::DEADLINE;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the receiver answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// This HTTP status, with a short body.
    Status(u16),
    /// Read the request, then say nothing for a minute (the client's deadline must end it).
    Hang,
}

/// One request received, complete.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
    pub at: Instant,
    /// How it was answered.
    pub reply: Reply,
}

/// See the module doc.
pub struct Receiver {
    addr: String,
    pub requests: Arc<Log<Received>>,
    replies: Arc<Mutex<Vec<Script>>>,
}

/// How requests to paths starting with `prefix` are answered: `first` in turn, then `then`.
struct Script {
    prefix: String,
    first: VecDeque<Reply>,
    then: Reply,
}

impl Receiver {
    /// A receiver on a free loopback port answering 200 to everything.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address").to_string();
        let requests = Log::new();
        let all =
            Script { prefix: String::new(), first: VecDeque::new(), then: Reply::Status(200) };
        let replies = Arc::new(Mutex::new(vec![all]));
        let (log, script) = (Arc::clone(&requests), Arc::clone(&replies));
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                thread::spawn(move || serve(stream, &log, &script));
            }
        });
        Receiver { addr, requests, replies }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with `first`, in order, then with `then` from there on.
    pub fn answer(&self, first: &[Reply], then: Reply) {
        self.answer_on("", first, then);
    }

    /// Like [`Receiver::answer`], for the requests whose path starts with `prefix` only (the
    /// longest prefix set wins).
    pub fn answer_on(&self, prefix: &str, first: &[Reply], then: Reply) {
        let mut scripts = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        scripts.retain(|s| s.prefix != prefix);
        let first = first.iter().copied().collect();
        scripts.push(Script { prefix: prefix.to_owned(), first, then });
        scripts.sort_by_key(|s| std::cmp::Reverse(s.prefix.len()));
    }

    /// Waits for the `n`th request and returns all received so far.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        self.requests
            .wait_for(
                Instant::now() + DEADLINE,
                &format!("{n} request(s) at the receiver"),
                |all| (all.len() >= n).then(|| all.to_vec()),
                || Ok(()),
            )
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.requests.read(<[Received]>::to_vec)
    }
}

fn serve(mut stream: TcpStream, log: &Log<Received>, replies: &Mutex<Vec<Script>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (path, content_type, body_start, length) = loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer) {
            Ok(httparse::Status::Complete(head)) => {
                let header = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let length = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                break (
                    request.path.unwrap_or("").to_owned(),
                    header("content-type"),
                    head,
                    length,
                );
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return,
        }
    };
    while buffer.len() < body_start + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buffer[body_start..body_start + length]).into_owned();
    let reply = {
        let mut scripts = replies.lock().unwrap_or_else(|p| p.into_inner());
        match scripts.iter_mut().find(|s| path.starts_with(&s.prefix)) {
            Some(script) => script.first.pop_front().unwrap_or(script.then),
            None => Reply::Status(200),
        }
    };
    log.push(Received { path, content_type, body, at: Instant::now(), reply });
    match reply {
        Reply::Status(status) => {
            let text = format!("answer {status}");
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{text}",
                text.len()
            );
        }
        Reply::Hang => thread::sleep(Duration::from_secs(60)),
    }
}
