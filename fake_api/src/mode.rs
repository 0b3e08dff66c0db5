//! The behaviours the fake API can put on, and what one `GET /health` does in each of them.
//!
//! Kept pure (no clock, no I/O) so the CLI, the script parser and the control endpoint all share
//! one vocabulary and one error message listing the valid choices.

use std::fmt;
use std::str::FromStr;

/// How `GET /health` behaves.
///
/// The first seven are the everyday outage kinds; the rest are the probe's fault matrix: each
/// breaks one rule of the exchange (transport, deadline, size, redirects, content type,
/// encoding, JSON shape) and nothing else, so a test can tell exactly which rule failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 `{"status":"OK"}`.
    Ok,
    /// 200 `{"status":"DOWN"}`: the API answers but reports itself unhealthy.
    Down,
    /// 503 `{"status":"ERROR"}`.
    Error,
    /// 200 `{"status":"OK"}` after the slow delay, longer than a probe timeout.
    Slow,
    /// 200 `text/html` with a body that is not JSON.
    Garbage,
    /// Closes the connection without any HTTP response.
    Reset,
    /// Alternates OK, DOWN, OK, DOWN… per request: never two failures in a row.
    Flap,
    /// 200 head at once, then the body one byte at a time, finishing only after the slow delay:
    /// each byte arrives well within any per-read timeout, so only a whole-request deadline
    /// ends the wait.
    Stall,
    /// 200 head announcing the whole body, half of the body, then a clean close (FIN).
    Cut,
    /// Like `cut`, but the connection is aborted with a TCP reset (RST) instead.
    Abort,
    /// 200 `{"status":"OK",…}` padded to 10 MiB, without `Content-Length`, streamed.
    Huge,
    /// 302 to `/health` itself: a redirect loop.
    Redirect,
    /// 200 `{"status":"OK"}` labelled `Content-Type: text/html`.
    Html,
    /// 200 `application/json` whose body is gzip-compressed bytes, not UTF-8 text.
    Binary,
    /// 200 `{"status":200}`.
    StatusNumber,
    /// 200 `{"status":null}`.
    StatusNull,
}

impl Mode {
    /// Every mode, in the order they are listed to users.
    pub const ALL: [Mode; 16] = [
        Mode::Ok,
        Mode::Down,
        Mode::Error,
        Mode::Slow,
        Mode::Garbage,
        Mode::Reset,
        Mode::Flap,
        Mode::Stall,
        Mode::Cut,
        Mode::Abort,
        Mode::Huge,
        Mode::Redirect,
        Mode::Html,
        Mode::Binary,
        Mode::StatusNumber,
        Mode::StatusNull,
    ];

    /// The lower-case name used on the command line, in scripts and in the control endpoint.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::Down => "down",
            Mode::Error => "error",
            Mode::Slow => "slow",
            Mode::Garbage => "garbage",
            Mode::Reset => "reset",
            Mode::Flap => "flap",
            Mode::Stall => "stall",
            Mode::Cut => "cut",
            Mode::Abort => "abort",
            Mode::Huge => "huge",
            Mode::Redirect => "redirect",
            Mode::Html => "html",
            Mode::Binary => "binary",
            Mode::StatusNumber => "status-number",
            Mode::StatusNull => "status-null",
        }
    }

    /// What one request answers in this mode. `flap_turn` counts the requests already answered
    /// since the API entered `flap`, so a flapping API starts with OK and alternates.
    pub fn answer(self, flap_turn: u64) -> Answer {
        match self {
            Mode::Ok => Answer::Ok,
            Mode::Down => Answer::Down,
            Mode::Error => Answer::Error,
            Mode::Slow => Answer::SlowOk,
            Mode::Garbage => Answer::Garbage,
            Mode::Reset => Answer::Reset,
            Mode::Flap if flap_turn % 2 == 0 => Answer::Ok,
            Mode::Flap => Answer::Down,
            Mode::Stall => Answer::Stall,
            Mode::Cut => Answer::Cut,
            Mode::Abort => Answer::Abort,
            Mode::Huge => Answer::Huge,
            Mode::Redirect => Answer::Redirect,
            Mode::Html => Answer::Html,
            Mode::Binary => Answer::Binary,
            Mode::StatusNumber => Answer::StatusNumber,
            Mode::StatusNull => Answer::StatusNull,
        }
    }

    /// The valid names joined for error messages: `ok, down, error, …`.
    pub fn valid_names() -> String {
        Mode::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mode name that is not one of [`Mode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMode(pub String);

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown mode '{}' (valid modes: {})", self.0, Mode::valid_names())
    }
}

impl std::error::Error for UnknownMode {}

impl FromStr for Mode {
    type Err = UnknownMode;

    /// Exact, case-insensitive match on the mode name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

/// What one `GET /health` answers. Unlike [`Mode`] it has no `Flap`: a flapping API answers
/// either [`Answer::Ok`] or [`Answer::Down`] on each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Down,
    Error,
    SlowOk,
    Garbage,
    Reset,
    Stall,
    Cut,
    Abort,
    Huge,
    Redirect,
    Html,
    Binary,
    StatusNumber,
    StatusNull,
}

impl Answer {
    /// Short name for the request log.
    pub fn name(self) -> &'static str {
        match self {
            Answer::Ok => "ok",
            Answer::Down => "down",
            Answer::Error => "error",
            Answer::SlowOk => "slow-ok",
            Answer::Garbage => "garbage",
            Answer::Reset => "reset",
            Answer::Stall => "stall",
            Answer::Cut => "cut",
            Answer::Abort => "abort",
            Answer::Huge => "huge",
            Answer::Redirect => "redirect",
            Answer::Html => "html",
            Answer::Binary => "binary",
            Answer::StatusNumber => "status-number",
            Answer::StatusNull => "status-null",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_mode() {
        for mode in Mode::ALL {
            assert_eq!(mode.name().parse::<Mode>(), Ok(mode), "round trip of {mode}");
        }
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!("DOWN".parse::<Mode>(), Ok(Mode::Down));
    }

    #[test]
    fn unknown_mode_error_lists_the_valid_choices() {
        let err = "sleepy".parse::<Mode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown mode 'sleepy' (valid modes: ok, down, error, slow, garbage, reset, flap, \
             stall, cut, abort, huge, redirect, html, binary, status-number, status-null)"
        );
    }

    #[test]
    fn fault_modes_have_hyphenated_names() {
        assert_eq!("status-number".parse::<Mode>(), Ok(Mode::StatusNumber));
        assert_eq!("Status-Null".parse::<Mode>(), Ok(Mode::StatusNull));
        assert_eq!(Mode::StatusNull.answer(0).name(), "status-null");
    }

    #[test]
    fn flap_alternates_starting_with_ok() {
        let answers: Vec<_> = (0..4).map(|turn| Mode::Flap.answer(turn)).collect();
        assert_eq!(answers, [Answer::Ok, Answer::Down, Answer::Ok, Answer::Down]);
    }

    #[test]
    fn steady_modes_ignore_the_flap_turn() {
        assert_eq!(Mode::Down.answer(0), Mode::Down.answer(1), "down stays down");
    }
}
