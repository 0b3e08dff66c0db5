//! One timestamped line per event on stderr — the fake API's request and mode-change log.
//!
//! The binaries are test doubles, so a logging framework would be more set-up than it saves;
//! stdout stays reserved for the start-up line tests parse (and, in `mail-sink`, the messages).

use std::fmt;
use std::io::Write;
use std::time::SystemTime;

/// Writes `<UTC timestamp, ms> <event>` as one line to stderr. A closed stderr is ignored: the
/// log must never take the server down.
pub fn log(event: fmt::Arguments<'_>) {
    let stamp = humantime::format_rfc3339_millis(SystemTime::now());
    let _ = writeln!(std::io::stderr().lock(), "{stamp} {event}");
}
