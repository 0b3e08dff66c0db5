//! `fake-api`: a scriptable fake health API, so demos and tests can simulate an outage (down,
//! errors, timeouts, garbage, resets, flapping, and every probe fault: stalled, cut, aborted or
//! huge bodies, redirect loops, wrong content types, untrusted TLS) without editing code or
//! breaking a real service.
//!
//! `main` only parses, runs, and turns a fatal error into an exit code: 2 for a bad command
//! line, 1 when the port cannot be bound or TLS cannot be set up. The server itself never
//! returns; it is stopped by a signal (the default actions of SIGINT/SIGTERM end the process at
//! once).

#![forbid(unsafe_code)]

use fake_api::cli::{self, Command, FakeApiArgs, Start, Transport};
use fake_api::control::{Shared, Source, State};
use fake_api::{events, server, tls};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

fn main() -> ExitCode {
    let args = match cli::parse_fake_api(std::env::args_os().skip(1), |key| std::env::var_os(key)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{}", cli::FAKE_API_HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-api: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("fake-api: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, announces the address on stdout, then serves forever.
fn run(args: FakeApiArgs) -> io::Result<std::convert::Infallible> {
    let wanted = SocketAddr::new(args.bind, args.port);
    let listener = TcpListener::bind(wanted)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {wanted}: {e}")))?;
    let address = listener.local_addr()?;
    let tls = match args.transport {
        Transport::Http => None,
        Transport::Https => {
            let config = tls::self_signed_config(args.bind)?;
            events::log(format_args!("tls certificate=self-signed"));
            Some(config)
        }
    };
    // The script clock starts once the port is open, so the first step is fully observable.
    let started = Instant::now();
    let source = match args.start {
        Start::Mode(mode) => {
            events::log(format_args!("start mode={mode} source=cli"));
            Source::Manual(mode)
        }
        Start::Script(script) => {
            let steps = script.steps().len();
            events::log(format_args!(
                "start mode={} source=script step=1/{steps}",
                script.first_mode()
            ));
            Source::Script { script, started }
        }
    };
    let shared = Arc::new(Shared::new(State::new(source.clone())));
    if let Source::Script { script, started } = source {
        server::spawn_script_watcher(Arc::clone(&shared), script, started)?;
    }
    announce(args.transport, address)?;
    server::serve(listener, shared, args.slow_delay, tls)
}

/// The one stdout line tests read to learn the port.
fn announce(transport: Transport, address: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "fake-api listening on {}://{address}", transport.scheme())?;
    out.flush()
}
