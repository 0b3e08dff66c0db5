//! End-to-end test of the real `mail-sink` binary: one message over a raw SMTP dialogue, the
//! readable block on stdout, and `--count 1` making it exit 0 after the session ends.

mod common;

use common::Running;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mail-sink");

/// An SMTP client session that checks each reply code.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    fn connect(address: &str) -> Smtp {
        let stream = TcpStream::connect(address).expect("connect to mail-sink");
        stream.set_read_timeout(Some(common::DEADLINE)).expect("timeout");
        let writer = stream.try_clone().expect("clone stream");
        let mut smtp = Smtp { reader: BufReader::new(stream), writer };
        smtp.expect(220, "greeting");
        smtp
    }

    /// Reads one (possibly multi-line) reply and checks its code.
    fn expect(&mut self, code: u16, after: &str) {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read SMTP reply");
            assert!(
                line.starts_with(&code.to_string()),
                "after {after}: expected {code}: {line:?}"
            );
            if line.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }

    fn command(&mut self, line: &str, code: u16) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).expect("write SMTP command");
        self.expect(code, line);
    }
}

/// Shaped like lettre's `alternative_plain_html`: encoded subject, quoted-printable text with a
/// soft line break and a non-ASCII character, an HTML part to skip, and a dot to unstuff.
const MESSAGE: &str = "From: monitor@example.com\r\n\
    To: support@example.com\r\n\
    Subject: =?utf-8?b?W0RPV05dIGFwaSDigJQgZG93bg==?=\r\n\
    MIME-Version: 1.0\r\n\
    Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
    \r\n\
    --b1\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    Content-Transfer-Encoding: quoted-printable\r\n\
    \r\n\
    https://api.example.com/health is DOWN =E2=80=94 HTTP 503 since 12:00=\r\n\
    :00Z.\r\n\
    ..leading dot\r\n\
    --b1\r\n\
    Content-Type: text/html; charset=utf-8\r\n\
    \r\n\
    <p>DOWN</p>\r\n\
    --b1--\r\n";

#[test]
fn prints_one_message_and_exits_after_count() {
    let mut sink =
        Running::start(BIN, &["--port", "0", "--count", "1"], "mail-sink listening on smtp://");
    let mut smtp = Smtp::connect(&sink.address);
    smtp.command("EHLO test.example", 250);
    smtp.command("MAIL FROM:<monitor@example.com>", 250);
    smtp.command("RCPT TO:<support@example.com>", 250);
    smtp.command("RCPT TO:<ops@example.com>", 250);
    smtp.command("DATA", 354);
    smtp.writer.write_all(MESSAGE.as_bytes()).expect("write message");
    smtp.command(".", 250);
    smtp.command("QUIT", 221);

    let status = sink.wait_exit();
    assert!(status.success(), "exits 0 after --count 1: {status:?}");
    let printed = sink.rest_of_stdout();
    let expected_lines = [
        "From: monitor@example.com",
        "To: support@example.com, ops@example.com",
        "Subject: [DOWN] api \u{2014} down",
        "https://api.example.com/health is DOWN \u{2014} HTTP 503 since 12:00:00Z.",
        ".leading dot",
    ];
    let lines: Vec<&str> = printed.lines().collect();
    assert!(lines[0].contains("message 1"), "a separator line first: {printed}");
    for expected in expected_lines {
        assert!(lines.contains(&expected), "missing line {expected:?} in:\n{printed}");
    }
    assert!(!printed.contains("<p>"), "the HTML part is not shown:\n{printed}");
}

#[test]
fn bad_count_exits_2_naming_the_option() {
    let output = Command::new(BIN).args(["--count", "0"]).output().expect("run mail-sink");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--count"));
}
