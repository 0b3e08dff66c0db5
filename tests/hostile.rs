//! Hostile configuration and data, through the real binaries: passwords (in URLs, in
//! `*_PASSWORD` variables, in `*_FILE` secrets) must never reach stderr, the log file, an error
//! message or an email, and a target URL built to inject mail headers or markup must come out
//! harmless in the email actually received.
//!
//! The database is a real MariaDB user with a real password (the login must work, or nothing
//! was proven), and the SMTP server of the first test is a small one in this file that offers
//! `AUTH` on a plain connection, so `lettre` really logs in with the secret. `mailin-embedded`
//! (the support server) offers no `AUTH` without TLS, and `lettre` then refuses to send at
//! all; the second test checks that refusal is logged without the secret.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

use mysql::prelude::Queryable;
use support::{monitor_env, run_monitor, scratch_db, temp_dir, FakeApi, Log, SmtpServer, SUPPORT};

/// The password every test hides.
const SECRET: &str = "s3cret";

// ---------------------------------------------------------------------------------------------
// Helpers: a monitor started with environment variables, a list to wait on, an SMTP server with
// AUTH, and MariaDB users that are dropped at the end.

/// A plain-text SMTP server that offers `AUTH PLAIN LOGIN` (as many internal relays do) and
/// records the credentials it is given and the raw messages it accepts.
struct AuthSmtp {
    addr: String,
    /// `(user, password)` of every successful `AUTH`.
    logins: Arc<Log<(String, String)>>,
    /// Raw `DATA` of every accepted message, dot-unstuffed.
    mails: Arc<Log<String>>,
}

impl AuthSmtp {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (logins, mails) = (Log::new(), Log::new());
        let (l, m) = (Arc::clone(&logins), Arc::clone(&mails));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (l, m) = (Arc::clone(&l), Arc::clone(&m));
                std::thread::spawn(move || {
                    if let Err(e) = Self::converse(stream, &l, &m) {
                        eprintln!("auth SMTP session ended: {e}");
                    }
                });
            }
        });
        AuthSmtp { addr, logins, mails }
    }

    /// One SMTP session, just enough of RFC 5321 and RFC 4954 for `lettre`.
    fn converse(
        stream: TcpStream,
        logins: &Log<(String, String)>,
        mails: &Log<String>,
    ) -> std::io::Result<()> {
        let mut out = stream.try_clone()?;
        let mut lines = BufReader::new(stream).lines();
        let mut next = move || lines.next().transpose().map(Option::unwrap_or_default);
        out.write_all(b"220 auth.test ESMTP\r\n")?;
        loop {
            let line = next()?;
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-auth.test\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n",
                "AUTH" => {
                    let words: Vec<&str> = line.split(' ').collect();
                    let login = match (words.get(1).map(|w| w.to_ascii_uppercase()), words.get(2)) {
                        (Some(m), Some(initial)) if m == "PLAIN" => plain(initial),
                        (Some(m), None) if m == "PLAIN" => {
                            out.write_all(b"334 \r\n")?;
                            plain(&next()?)
                        }
                        (Some(m), _) if m == "LOGIN" => {
                            out.write_all(b"334 VXNlcm5hbWU6\r\n")?;
                            let user = support::decode_base64(&next()?);
                            out.write_all(b"334 UGFzc3dvcmQ6\r\n")?;
                            (user, support::decode_base64(&next()?))
                        }
                        _ => (String::new(), String::new()),
                    };
                    logins.push(login);
                    b"235 2.7.0 Authentication successful\r\n"
                }
                "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 OK\r\n",
                "DATA" => {
                    out.write_all(b"354 go ahead\r\n")?;
                    let mut data = String::new();
                    loop {
                        let line = next()?;
                        if line == "." {
                            break;
                        }
                        data.push_str(line.strip_prefix('.').unwrap_or(&line));
                        data.push_str("\r\n");
                    }
                    mails.push(data);
                    b"250 2.0.0 queued\r\n"
                }
                "QUIT" => {
                    out.write_all(b"221 2.0.0 bye\r\n")?;
                    return Ok(());
                }
                "" => return Ok(()),
                _ => b"502 5.5.2 not implemented\r\n",
            };
            out.write_all(reply)?;
        }
    }
}

/// `(user, password)` from an `AUTH PLAIN` response: base64 of `authzid NUL user NUL password`.
fn plain(encoded: &str) -> (String, String) {
    let decoded = support::decode_base64(encoded);
    let mut parts = decoded.split('\0').skip(1);
    (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned())
}

/// MariaDB users that own the scratch database, dropped with this guard (before the database:
/// declare it after the [`scratch_db::ScratchDb`]).
struct DbUsers<'a> {
    db: &'a scratch_db::ScratchDb,
    names: Vec<String>,
}

/// The hosts a user is created for: `%` for a remote server; `localhost` and `127.0.0.1` in
/// case the server resolves names and has anonymous local users that would win over `%`.
const USER_HOSTS: [&str; 3] = ["%", "localhost", "127.0.0.1"];

impl<'a> DbUsers<'a> {
    fn new(db: &'a scratch_db::ScratchDb) -> Self {
        DbUsers { db, names: Vec::new() }
    }

    /// Creates `apimon_<tag>_<pid>` with `password` (no `'` or `\` in it) and all privileges on
    /// the scratch database; returns its name.
    fn create(&mut self, tag: &str, password: &str) -> String {
        assert!(!password.contains(['\'', '\\']), "kept out of the SQL literal");
        let name = format!("apimon_{tag}_{}", std::process::id());
        self.names.push(name.clone());
        let mut admin = self.db.admin().expect("admin connection");
        for host in USER_HOSTS {
            // Account names and passwords cannot be bound as parameters in CREATE USER/GRANT;
            // the name is ours and the password is checked above.
            admin
                .query_drop(format!("DROP USER IF EXISTS '{name}'@'{host}'"))
                .and_then(|()| {
                    admin.query_drop(format!(
                        "CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'"
                    ))
                })
                .and_then(|()| {
                    admin.query_drop(format!(
                        "GRANT ALL PRIVILEGES ON `{}`.* TO '{name}'@'{host}'",
                        self.db.name
                    ))
                })
                .expect("the test server lets its admin create users");
        }
        name
    }

    /// Rows in the scratch database's `state` table, read as the admin.
    fn state_rows(&self) -> u64 {
        let mut admin = self.db.admin().expect("admin connection");
        admin
            .query_first(format!("SELECT COUNT(*) FROM `{}`.state", self.db.name))
            .expect("the monitor created the state table")
            .unwrap_or(0)
    }
}

impl Drop for DbUsers<'_> {
    fn drop(&mut self) {
        let Ok(mut admin) = self.db.admin() else { return };
        for name in &self.names {
            for host in USER_HOSTS {
                if let Err(e) = admin.query_drop(format!("DROP USER IF EXISTS '{name}'@'{host}'")) {
                    eprintln!("warning: could not drop user {name}@{host}: {e}");
                }
            }
        }
    }
}

/// `host:port` of the scratch database's server.
fn server_of(db: &scratch_db::ScratchDb) -> String {
    let url = url::Url::parse(&db.url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(3306))
}

/// Asserts that `SECRET` is nowhere in `text`, naming `where_` and showing the text.
fn assert_hidden(where_: &str, text: &str) {
    assert!(!text.contains(SECRET), "the password leaked into {where_}:\n{text}");
}

fn write_secret(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

/// The fast loop every test runs: loopback, 200 ms, two probes to settle.
fn fast(url: &str) -> Vec<&str> {
    vec![
        "--url",
        url,
        "--support",
        SUPPORT,
        "--from",
        "monitor@example.com",
        "--interval",
        "200ms",
        "--timeout",
        "2s",
        "--failures",
        "2",
        "--successes",
        "2",
        "-v",
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The redaction test: MySQL and SMTP passwords in the URLs, a full outage and
/// recovery, and the password nowhere in stderr, the log file or the emails — while the
/// database login and the SMTP login both really used it.
#[test]
fn passwords_in_urls_never_reach_logs_or_emails() {
    let Some(db) = scratch_db::mysql("redact") else { return };
    let mut users = DbUsers::new(&db);
    let user = users.create("redact", SECRET);
    let api = FakeApi::start(&[]);
    let smtp = AuthSmtp::start();
    let dir = temp_dir("redact");
    let log_file = dir.join("monitor.log").display().to_string();
    let db_url = format!("mysql://{user}:{SECRET}@{}/{}", server_of(&db), db.name);
    let smtp_url = format!("smtp://mailer:{SECRET}@{}", smtp.addr);
    let url = api.health_url();
    let mut args = fast(&url);
    args.extend(["--db", &db_url, "--smtp", &smtp_url, "--log-file", &log_file]);

    let mon = monitor_env(&args, &[]);
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    let mails = smtp.mails.wait_until("the outage email", |m| !m.is_empty());
    assert!(mails[0].contains("OUTAGE"), "{}", mails[0]);
    api.set_mode("ok");
    let mails = smtp.mails.wait_until("the recovery email", |m| m.len() >= 2);
    assert!(mails[1].contains("RECOVERED"), "{}", mails[1]);
    let (status, stderr) = mon.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");

    assert_eq!(
        smtp.logins.snapshot()[0],
        ("mailer".to_owned(), SECRET.to_owned()),
        "lettre logged in with the password: it was used, only never shown"
    );
    assert_eq!(users.state_rows(), 3, "the database login worked: up, outage, recovery");
    assert!(stderr.contains(&format!("mysql://{user}:***@")), "shown masked:\n{stderr}");
    assert!(stderr.contains("smtp://mailer:***@"), "shown masked:\n{stderr}");
    assert_hidden("stderr", &stderr);
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("OUTAGE") && log.contains("RECOVERED"), "the log file is written");
    assert_hidden("the log file", &log);
    for mail in smtp.mails.snapshot() {
        assert_hidden("an email", &mail);
    }
}

/// The same through the Docker-secrets variables: the database password (with every awkward
/// character) from `DATABASE_PASSWORD_FILE`, the SMTP URL from `SMTP_URL_FILE`. The support
/// SMTP server offers no AUTH on a plain connection, so `lettre` refuses to send: that error is
/// logged, and the unsent email too, without the password.
#[test]
fn passwords_from_secret_files_never_reach_logs() {
    let Some(db) = scratch_db::mysql("redact_file") else { return };
    let mut users = DbUsers::new(&db);
    let password = format!("{SECRET}/@:?#%41 x");
    let user = users.create("redact_file", &password);
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let dir = temp_dir("redact-file");
    let smtp_addr = smtp.url.trim_start_matches("smtp://");
    let env = [
        ("DATABASE_URL", format!("mysql://{user}@{}/{}", server_of(&db), db.name)),
        ("DATABASE_PASSWORD_FILE", write_secret(&dir, "db_password", &format!("{password}\n"))),
        (
            "SMTP_URL_FILE",
            write_secret(&dir, "smtp_url", &format!("smtp://mailer:{SECRET}@{smtp_addr}\n")),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = api.health_url();

    let mon = monitor_env(&fast(&url), &env);
    mon.wait_for_line("UP target=");
    api.set_mode("down");
    mon.wait_for_line("OUTAGE target=");
    let refused = mon.wait_for_line("No compatible authentication mechanism");
    assert!(refused.contains("smtp://mailer:***@"), "names the server, masked: {refused}");
    let (status, stderr) = mon.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");

    assert!(users.state_rows() >= 2, "the password from the file logged in: up, outage");
    assert!(smtp.mails.snapshot().is_empty(), "lettre sent nothing without AUTH");
    assert_hidden("stderr", &stderr);
}

/// Help, a bad configuration and a misplaced URL print no password, whatever the environment
/// holds; a secret file that cannot be read names its variable and path.
#[test]
fn help_and_errors_never_show_a_password() {
    let env = [
        ("DATABASE_URL", "mysql://u:s3cret@db/m"),
        ("DATABASE_PASSWORD", SECRET),
        ("SMTP_URL", "smtp://u:s3cret@mail:25"),
        ("SMTP_PASSWORD", SECRET),
    ];
    let (status, out, err) = run_monitor(&["--help"], &env);
    assert_eq!(status.code(), Some(0));
    assert_hidden("--help", &format!("{out}{err}"));

    // (arguments, environment, what the one-line error must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--db", "mysql://u:s3cret@h/db", "--failures", "0"], &[], "--failures"),
        (&["--failures", "0"], &env, "--failures"),
        (&["mysql://u:s3cret@h/db"], &[], "unknown command"),
        (&["run", "smtp://u:s3cret@mail:25"], &[], "unexpected argument"),
        (&["--db", "postgres://u:s3cret@h/db"], &[], "--db"),
        (&["--db", "mysql://u:12/s3cret@h/db"], &[], "--db"),
        (&["--db", "mysql://u:s3cret@h:3306"], &[], "--db"),
        (&["--smtp", "smtp://u:s3cret@mail:25?tls=maybe"], &[], "--smtp"),
        (&["--url", "https://u:s3cret@api/health\r\nX: y"], &[], "--url"),
        (&["--db", "sqlite://x.db"], &[("DATABASE_PASSWORD", SECRET)], "DATABASE_PASSWORD"),
        (
            &["--db", "mysql://u@h/db"],
            &[("DATABASE_PASSWORD_FILE", "/nonexistent/db_password")],
            "DATABASE_PASSWORD_FILE: cannot read \"/nonexistent/db_password\"",
        ),
    ];
    for (args, env, names) in cases {
        let (status, out, err) = run_monitor(args, env);
        assert_eq!(status.code(), Some(2), "{args:?} {env:?} → {status:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line for {args:?}: {err}");
        assert!(err.contains(names), "{args:?} → {err:?} should name {names}");
        assert_hidden(&format!("the error for {args:?}"), &format!("{out}{err}"));
    }
}

/// A target URL carrying percent-encoded CR LF + `Bcc:` and a `<script>` tag (both valid in a
/// URL) reaches the email as text: no extra header, no extra recipient, no markup.
#[test]
fn a_hostile_target_url_cannot_inject_headers_or_markup() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let dir = temp_dir("inject");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    // Not a route of the fake API: every probe fails with HTTP 404.
    let url = format!("{}/health%0D%0ABcc:%20evil@example.com/<script>alert(1)</script>", api.base);
    let mut args = fast(&url);
    args.extend(["--db", &db, "--smtp", &smtp.url]);

    let mon = monitor_env(&args, &[]);
    let mail = smtp.wait_for(1).remove(0);
    let (_, stderr) = mon.stop();

    let head = mail.data.split("\r\n\r\n").next().unwrap();
    assert_eq!(mail.to, [SUPPORT], "the only recipient is the configured one");
    assert!(mail.header("Bcc").is_none(), "no Bcc header:\n{head}");
    assert!(
        !head.to_ascii_lowercase().contains("\nbcc:"),
        "no header line starts with Bcc:\n{head}"
    );
    assert_eq!(
        mail.subject(),
        format!("[api-monitor] OUTAGE: {url} is down"),
        "the subject carries the URL as text, on one logical line:\n{head}"
    );
    let html = mail.part("text/html").expect("an HTML part");
    assert!(!html.contains("<script"), "no live markup in the HTML:\n{html}");
    assert!(
        html.contains("/health%0D%0ABcc:%20evil@example.com/&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the URL is shown escaped:\n{html}"
    );
    let text = mail.text();
    assert!(
        text.lines().any(|l| l.starts_with("Target:") && l.ends_with(&url)),
        "the text part keeps the URL whole on its line:\n{text}"
    );
    let line = stderr.lines().find(|l| l.contains("OUTAGE target=")).expect("an OUTAGE line");
    assert!(line.contains(&url), "the log line holds the whole URL: {line}");
}

/// A target with user-info is shown masked in every log line and email; the probe gets the URL
/// as typed.
#[test]
fn a_target_password_is_shown_masked() {
    let api = FakeApi::start(&[]);
    let smtp = SmtpServer::start();
    let dir = temp_dir("target-password");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    let url = api.health_url().replace("http://", &format!("http://probe:{SECRET}@"));
    let mut args = fast(&url);
    args.extend(["--db", &db, "--smtp", &smtp.url]);

    let mon = monitor_env(&args, &[]);
    let masked = api.health_url().replace("http://", "http://probe:***@");
    mon.wait_for_line(&format!("target={masked}"));
    // Settle a state (either one: what matters is what is printed), and with it an email or
    // an UP line.
    mon.stderr.wait_until("a settled state", |lines| {
        lines.iter().any(|l| l.contains("UP target=") || l.contains("OUTAGE target="))
    });
    let (_, stderr) = mon.stop();
    assert_hidden("stderr", &stderr);
    for mail in smtp.mails.snapshot() {
        assert_hidden("an email", &mail.data);
        assert!(mail.subject().contains(&masked), "{}", mail.subject());
    }
}
