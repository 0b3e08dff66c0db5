//! Command lines of `fake-api` and `mail-sink`, parsed without touching the world: arguments
//! and environment come in as values, so every rule is unit-tested. `main` prints the errors and
//! picks the exit code (2).

use crate::mode::Mode;
use crate::script::Script;
use lexopt::prelude::*;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub const FAKE_API_HELP: &str = "\
fake-api: a scriptable fake health API for demos and tests of api-monitor

Usage: fake-api [--bind ADDR] [--port N] [--mode MODE | --script SCRIPT] [--slow-delay DUR]
                [--tls]

Options:
  --bind ADDR        IP address to listen on [env FAKE_API_BIND] (default 127.0.0.1)
  --port N           port, 0 picks a free one [env FAKE_API_PORT] (default 8000)
  --mode MODE        starting mode (default ok), see Modes
  --script SCRIPT    scenario of mode:duration steps from start, e.g. \"ok:20s,down:15s,ok\";
                     the last step may omit its duration; afterwards the last mode stays
  --slow-delay DUR   how long `slow` waits before answering, and `stall` takes to finish its
                     body (default 30s)
  --tls              serve HTTPS (control endpoint included) with a self-signed certificate
                     made at start: clients that verify certificates refuse it
  -h, --help         print this help

Modes (GET /health):
  ok             200 {\"status\":\"OK\"}
  down           200 {\"status\":\"DOWN\"}
  error          503 {\"status\":\"ERROR\"}
  slow           200 {\"status\":\"OK\"} after the slow delay
  garbage        200 text/html maintenance page
  reset          closes the connection without a response
  flap           alternates ok and down, request by request
  stall          200 head at once, then the body one byte every 200ms until the slow delay
  cut            200 head, half the announced body, then a clean close
  abort          200 head, half the announced body, then a TCP reset
  huge           200 JSON body of 10 MiB without Content-Length, streamed
  redirect       302 to /health itself
  html           200 {\"status\":\"OK\"} labelled Content-Type: text/html
  binary         200 application/json whose body is gzip bytes (not UTF-8)
  status-number  200 {\"status\":200}
  status-null    200 {\"status\":null}

Endpoints:
  GET  /health          answers per the current mode
  GET  /control         {\"mode\":\"<current>\"}
  POST /control/<mode>  switches mode (and cancels a running script)

Prints `fake-api listening on http://<ip>:<port>` (https:// with --tls) on stdout once
listening; logs every request and mode change on stderr.
";

pub const MAIL_SINK_HELP: &str = "\
mail-sink: a tiny SMTP server that prints every message it receives (for `make demo`)

Usage: mail-sink [--bind ADDR] [--port N] [--count N]

Options:
  --bind ADDR   IP address to listen on (default 127.0.0.1)
  --port N      port, 0 picks a free one (default 2525)
  --count N     exit 0 after N messages (default: run until killed)
  -h, --help    print this help

Prints `mail-sink listening on smtp://<ip>:<port>` on stdout once listening.
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<T> {
    Run(T),
    Help,
}

/// How `fake-api` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Mode(Mode),
    Script(Script),
}

/// Whether `fake-api` speaks plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    /// HTTPS with a self-signed certificate made at start ([`crate::tls`]).
    Https,
}

impl Transport {
    /// The URL scheme announced on stdout.
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Https => "https",
        }
    }
}

/// Validated `fake-api` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeApiArgs {
    pub bind: IpAddr,
    pub port: u16,
    pub start: Start,
    pub slow_delay: Duration,
    pub transport: Transport,
}

/// Validated `mail-sink` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSinkArgs {
    pub bind: IpAddr,
    pub port: u16,
    /// Exit after this many messages; `None` runs until killed.
    pub count: Option<u64>,
}

/// A command-line error: one line that names the option (or variable) at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<lexopt::Error> for CliError {
    fn from(e: lexopt::Error) -> Self {
        CliError(e.to_string())
    }
}

const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Parses `fake-api`'s arguments (without the program name). `env` looks up
/// `FAKE_API_BIND` / `FAKE_API_PORT`, used only when the flag is absent.
pub fn parse_fake_api<I>(
    args: I,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Command<FakeApiArgs>, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let (mut bind, mut port, mut mode, mut script) = (None, None, None, None);
    let mut slow_delay = Duration::from_secs(30);
    let mut transport = Transport::Http;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("bind") => bind = Some(parse_bind("--bind", parser.value()?)?),
            Long("port") => port = Some(parse_port("--port", parser.value()?)?),
            Long("mode") => mode = Some(parse_mode(parser.value()?)?),
            Long("script") => script = Some(parse_script(parser.value()?)?),
            Long("slow-delay") => slow_delay = parse_duration("--slow-delay", parser.value()?)?,
            Long("tls") => transport = Transport::Https,
            _ => return Err(arg.unexpected().into()),
        }
    }
    let bind = match (bind, env("FAKE_API_BIND")) {
        (Some(bind), _) => bind,
        (None, Some(value)) => parse_bind("FAKE_API_BIND", value)?,
        (None, None) => DEFAULT_BIND,
    };
    let port = match (port, env("FAKE_API_PORT")) {
        (Some(port), _) => port,
        (None, Some(value)) => parse_port("FAKE_API_PORT", value)?,
        (None, None) => 8000,
    };
    let start = match (mode, script) {
        (Some(_), Some(_)) => {
            return Err(CliError(
                "--mode and --script cannot be combined (the script's first \
                                 step is the starting mode)"
                    .into(),
            ))
        }
        (_, Some(script)) => Start::Script(script),
        (mode, None) => Start::Mode(mode.unwrap_or(Mode::Ok)),
    };
    Ok(Command::Run(FakeApiArgs { bind, port, start, slow_delay, transport }))
}

/// Parses `mail-sink`'s arguments (without the program name).
pub fn parse_mail_sink<I>(args: I) -> Result<Command<MailSinkArgs>, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut sink = MailSinkArgs { bind: DEFAULT_BIND, port: 2525, count: None };
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("bind") => sink.bind = parse_bind("--bind", parser.value()?)?,
            Long("port") => sink.port = parse_port("--port", parser.value()?)?,
            Long("count") => sink.count = Some(parse_count(parser.value()?)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Command::Run(sink))
}

/// The value as UTF-8, or an error naming `name`.
fn text(name: &str, value: OsString) -> Result<String, CliError> {
    value.into_string().map_err(|v| CliError(format!("{name}: value {v:?} is not valid UTF-8")))
}

fn parse_bind(name: &str, value: OsString) -> Result<IpAddr, CliError> {
    let value = text(name, value)?;
    value.trim().parse().map_err(|_| {
        CliError(format!("{name}: '{value}' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)"))
    })
}

fn parse_port(name: &str, value: OsString) -> Result<u16, CliError> {
    let value = text(name, value)?;
    value.trim().parse().map_err(|_| {
        CliError(format!("{name}: '{value}' is not a port number (0-65535; 0 picks a free port)"))
    })
}

fn parse_mode(value: OsString) -> Result<Mode, CliError> {
    let value = text("--mode", value)?;
    value.parse().map_err(|e| CliError(format!("--mode: {e}")))
}

fn parse_script(value: OsString) -> Result<Script, CliError> {
    let value = text("--script", value)?;
    value.parse().map_err(|e| CliError(format!("--script: {e}")))
}

fn parse_duration(name: &str, value: OsString) -> Result<Duration, CliError> {
    let value = text(name, value)?;
    humantime::parse_duration(value.trim()).map_err(|e| {
        CliError(format!("{name}: bad duration '{value}' ({e}; expected e.g. 500ms, 5s, 2m)"))
    })
}

fn parse_count(value: OsString) -> Result<u64, CliError> {
    let value = text("--count", value)?;
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(CliError(format!("--count: '{value}' is not a whole number of messages >= 1"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn fake_api(args: &[&str], env: &[(&str, &str)]) -> Result<Command<FakeApiArgs>, CliError> {
        let env: HashMap<String, OsString> =
            env.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        parse_fake_api(args.iter().copied(), |key| env.get(key).cloned())
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> FakeApiArgs {
        match fake_api(args, env) {
            Ok(Command::Run(args)) => args,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    fn error(args: &[&str], env: &[(&str, &str)]) -> String {
        match fake_api(args, env) {
            Err(e) => e.0,
            other => panic!("expected an error for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let args = run(&[], &[]);
        assert_eq!(
            args,
            FakeApiArgs {
                bind: DEFAULT_BIND,
                port: 8000,
                start: Start::Mode(Mode::Ok),
                slow_delay: Duration::from_secs(30),
                transport: Transport::Http,
            }
        );
    }

    #[test]
    fn flags_are_read() {
        let args = run(
            &["--bind", "0.0.0.0", "--port=0", "--mode", "flap", "--slow-delay", "500ms", "--tls"],
            &[],
        );
        assert_eq!(args.bind, "0.0.0.0".parse::<IpAddr>().expect("ip"));
        assert_eq!(args.transport, Transport::Https);
        assert_eq!(args.port, 0);
        assert_eq!(args.start, Start::Mode(Mode::Flap));
        assert_eq!(args.slow_delay, Duration::from_millis(500));
    }

    #[test]
    fn environment_is_a_fallback_and_the_flag_wins() {
        let env = [("FAKE_API_PORT", "9000"), ("FAKE_API_BIND", "::1")];
        let args = run(&[], &env);
        assert_eq!((args.bind, args.port), ("::1".parse().expect("ip"), 9000), "from env");
        assert_eq!(run(&["--port", "9100"], &env).port, 9100, "flag wins");
    }

    #[test]
    fn script_is_validated_at_start() {
        let args = run(&["--script", "ok:300ms,down"], &[]);
        assert!(matches!(args.start, Start::Script(_)));
        let message = error(&["--script", "ok:5x"], &[]);
        assert!(message.starts_with("--script: step 1: bad duration '5x'"), "{message}");
        let message = error(&["--script", "ok:1s,nap"], &[]);
        assert!(message.starts_with("--script: step 2: unknown mode 'nap'"), "{message}");
    }

    #[test]
    fn errors_name_the_option() {
        assert!(error(&["--port", "x"], &[]).starts_with("--port: 'x' is not a port"));
        assert!(error(&["--port", "70000"], &[]).starts_with("--port:"));
        assert!(error(&["--bind", "localhost"], &[]).starts_with("--bind:"));
        assert!(error(&["--mode", "nap"], &[]).contains("valid modes: ok, down"));
        assert!(error(&["--slow-delay", "soon"], &[]).starts_with("--slow-delay:"));
        assert!(error(&[], &[("FAKE_API_PORT", "x")]).starts_with("FAKE_API_PORT:"));
        assert!(error(&["--mode", "ok", "--script", "ok"], &[]).contains("cannot be combined"));
        assert!(error(&["--verbose"], &[]).contains("--verbose"), "unknown flags are named");
        assert!(error(&["--port"], &[]).contains("--port"), "missing value names the flag");
        assert!(error(&["--tls=yes"], &[]).contains("--tls"), "--tls takes no value");
    }

    #[test]
    fn help_lists_every_mode() {
        for mode in Mode::ALL {
            assert!(
                FAKE_API_HELP.lines().any(|l| l.trim_start().starts_with(&format!("{mode} "))),
                "--help describes {mode}"
            );
        }
    }

    #[test]
    fn help_wins() {
        assert_eq!(fake_api(&["--port", "1", "--help"], &[]), Ok(Command::Help));
        assert_eq!(parse_mail_sink(["-h"]), Ok(Command::Help));
    }

    #[test]
    fn mail_sink_defaults_and_count() {
        assert_eq!(
            parse_mail_sink(Vec::<String>::new()),
            Ok(Command::Run(MailSinkArgs { bind: DEFAULT_BIND, port: 2525, count: None }))
        );
        let Ok(Command::Run(sink)) = parse_mail_sink(["--port", "0", "--count", "2"]) else {
            panic!("valid mail-sink args");
        };
        assert_eq!((sink.port, sink.count), (0, Some(2)));
        let Err(e) = parse_mail_sink(["--count", "0"]) else { panic!("count 0 is rejected") };
        assert!(e.0.starts_with("--count:"), "{e}");
    }
}
