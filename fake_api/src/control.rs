//! The fake API's current mode, shared between the connection threads, the script watcher and
//! the control endpoint.
//!
//! [`State`] is pure (the caller passes `now`), so switching, script progression and the flap
//! alternation are unit-tested without threads or sleeps; [`Shared`] only adds the mutex.

use crate::mode::{Answer, Mode};
use crate::script::{mode_at, Script};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Where the current mode comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Set by `--mode` or by `POST /control/<mode>`; stays until the next switch.
    Manual(Mode),
    /// `--script`, measured from `started`. Any manual switch replaces it for good.
    Script { script: Script, started: Instant },
}

/// The outcome of a manual switch, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub from: Mode,
    pub to: Mode,
    /// A running script was cancelled by this switch.
    pub cancelled_script: bool,
}

/// Which stretch of time a flap count belongs to: a new manual switch or a new script step
/// starts a new period, so every time the API enters `flap` it answers OK first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    switches: u64,
    step: usize,
}

/// The mode and the bookkeeping needed to answer `GET /health`.
#[derive(Debug)]
pub struct State {
    source: Source,
    /// Manual switches so far; part of [`Period`].
    switches: u64,
    flap_period: Period,
    flap_turn: u64,
}

impl State {
    pub fn new(source: Source) -> State {
        let period = Period { switches: 0, step: 0 };
        State { source, switches: 0, flap_period: period, flap_turn: 0 }
    }

    /// The mode in force at `now`.
    pub fn mode(&self, now: Instant) -> Mode {
        match &self.source {
            Source::Manual(mode) => *mode,
            Source::Script { script, started } => mode_at(script, elapsed(*started, now)),
        }
    }

    /// Whether a script still drives the mode (no manual switch happened yet).
    pub fn is_scripted(&self) -> bool {
        matches!(self.source, Source::Script { .. })
    }

    /// Answers one `GET /health` at `now`: the mode in force and what to do. Advances the flap
    /// alternation, so call it exactly once per request.
    pub fn answer(&mut self, now: Instant) -> (Mode, Answer) {
        let mode = self.mode(now);
        if mode != Mode::Flap {
            return (mode, mode.answer(0));
        }
        let period = self.period(now);
        if period != self.flap_period {
            self.flap_period = period;
            self.flap_turn = 0;
        }
        let answer = mode.answer(self.flap_turn);
        self.flap_turn += 1;
        (mode, answer)
    }

    /// Switches to `to` by hand, cancelling any running script.
    pub fn switch(&mut self, to: Mode, now: Instant) -> Switch {
        let from = self.mode(now);
        let cancelled_script = self.is_scripted();
        self.source = Source::Manual(to);
        self.switches += 1;
        Switch { from, to, cancelled_script }
    }

    fn period(&self, now: Instant) -> Period {
        let step = match &self.source {
            Source::Manual(_) => 0,
            Source::Script { script, started } => script.step_at(elapsed(*started, now)),
        };
        Period { switches: self.switches, step }
    }
}

/// `now - started`, zero if the clock reads earlier (never panics).
fn elapsed(started: Instant, now: Instant) -> std::time::Duration {
    now.saturating_duration_since(started)
}

/// [`State`] behind a mutex, shared by every thread of the server.
#[derive(Debug)]
pub struct Shared(Mutex<State>);

impl Shared {
    pub fn new(state: State) -> Shared {
        Shared(Mutex::new(state))
    }

    /// Locks the state. Hold the guard while logging a change so log lines come out in the order
    /// the changes happened.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in `State` can panic half-way through an update, so poison means a bug.
        self.0.lock().expect("mode state mutex poisoned: a thread panicked while holding it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scripted(text: &str, started: Instant) -> State {
        let script = text.parse().expect("test script parses");
        State::new(Source::Script { script, started })
    }

    fn answers(state: &mut State, now: Instant, n: usize) -> Vec<Answer> {
        (0..n).map(|_| state.answer(now).1).collect()
    }

    #[test]
    fn manual_mode_answers_steadily() {
        let mut state = State::new(Source::Manual(Mode::Error));
        let now = Instant::now();
        assert_eq!(state.answer(now), (Mode::Error, Answer::Error));
        assert_eq!(state.answer(now), (Mode::Error, Answer::Error), "no alternation");
    }

    #[test]
    fn flap_alternates_per_request() {
        let mut state = State::new(Source::Manual(Mode::Flap));
        let got = answers(&mut state, Instant::now(), 4);
        assert_eq!(got, [Answer::Ok, Answer::Down, Answer::Ok, Answer::Down]);
    }

    #[test]
    fn entering_flap_again_starts_with_ok() {
        let now = Instant::now();
        let mut state = State::new(Source::Manual(Mode::Flap));
        assert_eq!(answers(&mut state, now, 1), [Answer::Ok]);
        state.switch(Mode::Ok, now);
        state.switch(Mode::Flap, now);
        assert_eq!(answers(&mut state, now, 2), [Answer::Ok, Answer::Down], "fresh period");
    }

    #[test]
    fn script_drives_the_mode_from_elapsed_time() {
        let t0 = Instant::now();
        let mut state = scripted("ok:20s,down:15s,ok", t0);
        assert_eq!(state.answer(t0).0, Mode::Ok, "first step");
        assert_eq!(state.answer(t0 + Duration::from_secs(21)).0, Mode::Down, "outage");
        assert_eq!(state.answer(t0 + Duration::from_secs(36)).0, Mode::Ok, "recovered");
    }

    #[test]
    fn a_manual_switch_cancels_the_script_for_good() {
        let t0 = Instant::now();
        let mut state = scripted("down:1s,error", t0);
        let switch = state.switch(Mode::Ok, t0 + Duration::from_millis(100));
        assert_eq!(switch, Switch { from: Mode::Down, to: Mode::Ok, cancelled_script: true });
        assert!(!state.is_scripted());
        assert_eq!(state.mode(t0 + Duration::from_secs(60)), Mode::Ok, "script no longer runs");
        let again = state.switch(Mode::Down, t0 + Duration::from_secs(61));
        assert!(!again.cancelled_script, "nothing left to cancel");
    }

    #[test]
    fn scripted_flap_steps_each_start_with_ok() {
        let t0 = Instant::now();
        let mut state = scripted("flap:1s,flap", t0);
        assert_eq!(answers(&mut state, t0, 1), [Answer::Ok]);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(answers(&mut state, later, 2), [Answer::Ok, Answer::Down], "new step");
    }

    #[test]
    fn a_clock_reading_before_the_start_counts_as_the_start() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let state = scripted("error:1s,ok", t0);
        assert_eq!(state.mode(Instant::now()), Mode::Error);
    }
}
