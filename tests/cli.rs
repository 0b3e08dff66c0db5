//! The command line through the real binary: help, version, and every kind of bad input
//! exiting 2 with one line that names the option.

mod support;

use support::{monitor, run_monitor, FakeApi};
use testkit::HealthServer;

#[test]
fn help_lists_the_options_and_exits_0() {
    let (status, out, _) = run_monitor(&["--help"], &[]);
    assert_eq!(status.code(), Some(0));
    for option in ["--url", "--support", "--interval", "--db", "--smtp", "check"] {
        assert!(out.contains(option), "--help mentions {option}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let (status, out, _) = run_monitor(&["--version"], &[]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(out.trim(), format!("api-monitor {}", env!("CARGO_PKG_VERSION")));
}

/// `base` and `x`s up to `length` characters.
fn long_url(base: &str, length: usize) -> String {
    format!("{base}{}", "x".repeat(length - base.len()))
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_option() {
    // Target URLs are recorded in a `VARCHAR(2048)` column: a longer one is bad input, named
    // by where it came from: the flag, the variable, or the file and the target.
    let long = long_url("https://api.example.com/health?pad=", 2049);
    let too_long = "URL is 2049 characters long, the most a target may have is 2048";
    let dir = support::temp_dir("long-url");
    let file = dir.join("monitor.toml");
    std::fs::write(&file, format!("[[target]]\nurl = \"{long}\"\n")).unwrap();
    let file = file.to_str().unwrap();
    let from_flag = format!("--url: {too_long}");
    let from_variable = format!("API_URL: {too_long}");
    let from_file = format!("{file}: target[1].url: {too_long}");
    // A file that names no target: it must not monitor the default URL.
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    let no_target = format!("{empty}: no [[target]]");
    let defaults_only = dir.join("defaults.toml");
    std::fs::write(&defaults_only, "interval = \"10s\"\n").unwrap();
    let defaults_only = defaults_only.to_str().unwrap();
    let no_target_either = format!("{defaults_only}: no [[target]]");
    // A timeout the clock cannot add: it made every probe (and `check`) panic.
    let endless = dir.join("endless.toml");
    let text = "timeout = \"18446744073709551615s\"\n[[target]]\nurl = \"http://127.0.0.1:1/h\"\n";
    std::fs::write(&endless, text).unwrap();
    let endless = endless.to_str().unwrap();
    let too_long =
        format!("{endless}: timeout: \"18446744073709551615s\" is too long; at most 24h");
    // (arguments, environment, what the message must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--bogus"], &[], "--bogus"),
        (&["--url", "not a url"], &[], "--url"),
        (&["--support", "nobody"], &[], "--support"),
        (&["--failures", "0"], &[], "--failures"),
        (&["--successes", "0"], &[], "--successes"),
        (&["--interval", "fast"], &[], "--interval"),
        (&["--interval", "200ms", "--url", "https://example.com/health"], &[], "--interval"),
        (&["--db", "postgres://localhost/db"], &[], "--db"),
        (&["--smtp", "http://mail"], &[], "--smtp"),
        (
            &["check", "--smtp", "smtp://mailer:pa#ss@mail.example.com:587"],
            &[],
            "--smtp: the password in the URL has a '#' that is not percent-encoded",
        ),
        (
            &["check"],
            &[("SMTP_URL", "smtp://mailer:pa/ss@mail.example.com:587")],
            "SMTP_URL: the password in the URL has a '/' that is not percent-encoded",
        ),
        (&[], &[("INTERVAL", "soon")], "INTERVAL: invalid duration"),
        (&["check"], &[("FAILURE_THRESHOLD", "0")], "FAILURE_THRESHOLD: expected a whole number"),
        (&["check"], &[("SUPPORT", "nobody")], "SUPPORT: invalid email address"),
        (&["check"], &[("API_URL", "")], "API_URL: set but blank"),
        (&["check"], &[("DATABASE_URL", " ")], "DATABASE_URL: set but blank"),
        (&["check"], &[("CONFIG", "")], "CONFIG: set but blank"),
        (&["check", "--config", empty], &[], &no_target),
        (&["check"], &[("CONFIG", defaults_only)], &no_target_either),
        (&["check", "--log-file", ""], &[], "--log-file: empty"),
        (&["check", "-v", "-q"], &[], "-v and -q: give one or the other"),
        (&["--interval", "99999999999999h"], &[], "--interval: \"99999999999999h\" is too long"),
        (
            &["check", "--url", "http://127.0.0.1:1/h", "--timeout", "18446744073709551615s"],
            &[],
            "--timeout: \"18446744073709551615s\" is too long",
        ),
        (&["check"], &[("TIMEOUT", "25h")], "TIMEOUT: \"25h\" is too long; at most 24h"),
        (&["check", "--slow", "fast"], &[], "--slow: invalid duration \"fast\""),
        (&["check", "--slow", "0s"], &[], "--slow: must be longer than zero"),
        (
            &["check", "--url", "http://127.0.0.1:1/h", "--timeout", "1s", "--slow", "1s"],
            &[],
            "--slow: \"1s\" must be shorter than the timeout (1s) of http://127.0.0.1:1/h",
        ),
        (&["check"], &[("SLOW", "10s")], "SLOW: \"10s\" must be shorter than the timeout (5s)"),
        (&["check", "--config", endless], &[], &too_long),
        (&["report", "--since", "100y"], &[], "--since: \"100y\" is too long; at most 10y"),
        (&["check", "-vvv"], &[], "-v: given 3 times"),
        (&[], &[("LOG_LEVEL", "chatty")], "LOG_LEVEL"),
        (&["frobnicate"], &[], "frobnicate"),
        (&["--json"], &[], "--json"),
        (&["check", "--since", "7d"], &[], "--since"),
        (&["report", "--since", "a week"], &[], "--since"),
        (&["--listen", "everywhere"], &[], "--listen"),
        (&["check", "--healthz"], &[], "--healthz: no address to ask"),
        (&["run", "--healthz"], &[], "--healthz"),
        (&["check", "--url", &long], &[], &from_flag),
        (&["check"], &[("API_URL", &long)], &from_variable),
        (&["check", "--config", file], &[], &from_file),
    ];
    for (args, env, option) in cases {
        let (status, out, err) = run_monitor(args, env);
        assert_eq!(status.code(), Some(2), "{args:?} {env:?} → {status:?}, stderr {err:?}");
        assert_eq!(err.lines().count(), 1, "exactly one line for {args:?}: {err:?}");
        assert!(err.contains(option), "{args:?} {env:?} → {err:?} should name {option}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.is_empty());
    }
}

/// The longest target URL the database column holds is probed as it is: nothing cuts it.
#[test]
fn a_target_url_of_2048_characters_is_accepted_and_probed_whole() {
    let api = HealthServer::start(1).unwrap();
    let url = long_url(&api.url("/health?pad="), 2048);
    let (status, out, err) = run_monitor(&["check", "--url", &url, "--timeout", "2s"], &[]);
    assert_eq!(status.code(), Some(0), "{out} {err}");
    assert!(out.starts_with(&format!("OK     {url} from direct")), "{out}");
    let path = &url[api.url("").len()..];
    assert!(api.hits.read(|hits| hits.iter().any(|h| h.path == path)), "the server saw it all");
}

#[test]
fn check_exits_0_when_healthy_and_1_when_not() {
    let api = FakeApi::start(&[]);
    let url = api.health_url();
    let (status, out, _) = run_monitor(&["check", "--url", &url, "--timeout", "2s"], &[]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.starts_with("OK"), "{out}");

    api.set_mode("error");
    let (status, out, _) = run_monitor(&["check", "--url", &url, "--timeout", "2s"], &[]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("HTTP 503"), "{out}");
}

/// `check --healthz` (the image's health check) judges the monitor, not its target: it stays
/// healthy through the API's outage, reads the address from LISTEN as the container's
/// environment gives it (a wildcard asked on loopback), and fails when no monitor answers.
#[test]
fn check_healthz_asks_the_running_monitor_not_the_api() {
    let api = FakeApi::start(&[]);
    let port = testkit::net::reserve_port();
    let listen = format!("0.0.0.0:{port}");
    let db = format!("sqlite://{}/healthz.db", support::temp_dir("healthz").display());
    let env = [
        ("LISTEN", listen.as_str()),
        ("API_URL", &api.health_url()),
        ("TIMEOUT", "2s"),
        ("DATABASE_URL", &db),
    ];
    let (status, out, _) = run_monitor(&["check", "--healthz"], &env);
    assert_eq!(status.code(), Some(1), "no monitor yet: {out}");
    assert!(
        out.starts_with(&format!("FAIL   http://127.0.0.1:{port}/healthz: no answer")),
        "{out}"
    );

    let mon = support::monitor_env(&["run", "--interval", "200ms", "-v"], &env);
    mon.wait_for_line("HTTP server listening");
    api.set_mode("down");
    mon.wait_for_line("OUTAGE");
    let (status, out, err) = run_monitor(&["check", "--healthz"], &env);
    assert_eq!(status.code(), Some(0), "the monitor is well during the outage: {out} {err}");
    assert_eq!(out, format!("OK     http://127.0.0.1:{port}/healthz: ok\n"));
    let (status, out, _) = run_monitor(&["check"], &env);
    assert_eq!(status.code(), Some(1), "while plain check judges the API: {out}");
    mon.stop();
}

#[test]
fn a_variable_that_is_not_utf8_is_refused_by_name_not_taken_as_unset() {
    use std::os::unix::ffi::OsStrExt;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api-monitor"))
        .arg("check")
        .env_clear()
        .env("API_URL", std::ffi::OsStr::from_bytes(b"http://127.0.0.1:9/h\xffealth"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("API_URL"), "names the variable: {stderr}");
    assert!(!stderr.contains("fitpay"), "no fallback to the default URL: {stderr}");
}

#[test]
fn an_unreachable_database_at_start_is_survived_and_reported_without_its_password() {
    let api = FakeApi::start(&[]);
    let mut mon = monitor(&[
        "--url",
        &api.health_url(),
        "--db",
        "mysql://root:s3cret@127.0.0.1:1/db",
        "--interval",
        "200ms",
    ]);
    mon.wait_for_line("DATABASE UNAVAILABLE");
    let probes = mon.count("probe ok");
    mon.wait_for_count("probe ok", probes + 3);
    mon.signal("TERM");
    assert_eq!(mon.wait_exit().code(), Some(0), "it kept running and stops cleanly");
    let log = mon.stderr.snapshot().join("\n");
    assert!(!log.contains("s3cret"), "{log}");
}

#[test]
fn report_prints_a_table_or_json_from_the_database() {
    use api_monitor::store::{self, Commit, NewState};
    use api_monitor::timestamp::{Clock, SystemClock};
    let dir = support::temp_dir("report-cli");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    let now = SystemClock.now();
    let target = "https://api.example.com/health";
    let mut s = store::open(&db).unwrap();
    for (ago_s, healthy, reason) in
        [(7200, true, None), (3600, false, Some("HTTP 503")), (1800, true, None)]
    {
        let row = NewState {
            key: store::new_key(),
            timestamp: now.minus(std::time::Duration::from_secs(ago_s)),
            healthy,
            target: target.into(),
            region: "direct".into(),
            reason: reason.map(String::from),
            maintenance: None,
            held: false,
        };
        s.commit(&Commit { state: Some(row), notifications: Vec::new(), release: None }).unwrap();
    }
    drop(s);

    let (status, out, err) = run_monitor(&["report", "--db", &db], &[]);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(out.contains(target) && out.contains("HTTP 503") && out.contains("30m"), "{out}");

    let (status, out, _) = run_monitor(&["report", "--db", &db, "--json", "--since", "1d"], &[]);
    assert_eq!(status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(json["series"][0]["target"], target);
    assert_eq!(json["series"][0]["outages"], 1);
    assert_eq!(json["series"][0]["outages_list"][0]["length_seconds"], 1800.0);

    let (status, _, err) = run_monitor(&["report", "--db", &db, "--target", "https://nope/"], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("--target"), "{err}");
}

/// A MySQL server that offers TLS, with a TLS option in the URL (any of them turns TLS on,
/// here one that changes nothing else): the driver builds its rustls
/// configuration from rustls's process-default provider, which the binary installs first
/// thing (`src/crypto.rs`); any build beside the test tools has two providers compiled in and
/// no default of its own. This fake server sends a handshake offering TLS, checks that a TLS
/// ClientHello follows the driver's SSL request, and closes: `report` fails with a database
/// error (exit 1), not a panic (exit 101: "no process-level CryptoProvider available").
#[test]
fn a_database_that_offers_tls_is_met_with_tls_not_a_panic() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // HandshakeV10 offering CLIENT_SSL besides the usual 4.1 capabilities.
        let capabilities: u32 = 0x1 | 0x4 | 0x8 | 0x200 | 0x800 | 0x2000 | 0x8000 | 0x8_0000;
        let mut payload = vec![0x0a];
        payload.extend_from_slice(b"5.7.99-fake\0");
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(b"abcdefgh\0");
        payload.extend_from_slice(&(capabilities as u16).to_le_bytes());
        payload.push(0x21);
        payload.extend_from_slice(&2u16.to_le_bytes());
        payload.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
        payload.push(21);
        payload.extend_from_slice(&[0; 10]);
        payload.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
        let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        packet.push(0);
        packet.extend_from_slice(&payload);
        peer.write_all(&packet).unwrap();
        // The SSL request: a 32-byte packet, sequence 1; then the TLS record of a ClientHello.
        let mut request = [0u8; 4 + 32 + 1];
        match peer.read_exact(&mut request) {
            Ok(()) => request[3] == 1 && request[36] == 0x16,
            Err(_) => false,
        }
    });
    let url = format!("mysql://root@127.0.0.1:{port}/test?danger_skip_domain_validation=false");
    let (status, _, err) = run_monitor(&["report", "--db", &url], &[]);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(1), "a database error: {err}");
    assert!(server.join().unwrap(), "the driver asked for TLS and began a handshake: {err}");
}
