//! Scripted scenarios: `--script "ok:20s,down:15s,ok"` plays an outage without anyone touching
//! the control endpoint.
//!
//! Pure: the mode at any moment is a function of the script and the time elapsed since start
//! ([`mode_at`]), so no background thread has to keep the mode in step and the tests need no
//! clock.

use crate::mode::{Mode, UnknownMode};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One `mode[:duration]` step. `duration` is `None` only on the last step ("stay there").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub mode: Mode,
    pub duration: Option<Duration>,
}

/// A validated scenario.
///
/// Invariants (enforced by [`FromStr`]): at least one step; every step but the last has a
/// non-zero duration; the last step may have none. After the last timed step ends the API stays
/// in that step's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    steps: Vec<Step>,
}

/// Why a `--script` value was rejected. Steps are numbered from 1, as a user counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptError {
    Empty,
    EmptyStep { step: usize },
    UnknownMode { step: usize, source: UnknownMode },
    BadDuration { step: usize, text: String, reason: String },
    ZeroDuration { step: usize },
    MissingDuration { step: usize, mode: Mode },
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptError::Empty => {
                f.write_str("empty script (expected steps like \"ok:20s,down:15s,ok\")")
            }
            ScriptError::EmptyStep { step } => write!(f, "step {step} is empty"),
            ScriptError::UnknownMode { step, source } => write!(f, "step {step}: {source}"),
            ScriptError::BadDuration { step, text, reason } => write!(
                f,
                "step {step}: bad duration '{text}' ({reason}; expected e.g. 500ms, 5s, 2m)"
            ),
            ScriptError::ZeroDuration { step } => {
                write!(f, "step {step}: duration must be greater than zero")
            }
            ScriptError::MissingDuration { step, mode } => {
                write!(f, "step {step} '{mode}' needs a duration (only the last step may omit it)")
            }
        }
    }
}

impl std::error::Error for ScriptError {}

impl FromStr for Script {
    type Err = ScriptError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(ScriptError::Empty);
        }
        let texts: Vec<&str> = s.split(',').collect();
        let last = texts.len();
        let mut steps = Vec::with_capacity(last);
        for (index, text) in texts.into_iter().enumerate() {
            let step = parse_step(index + 1, text)?;
            if step.duration.is_none() && index + 1 != last {
                return Err(ScriptError::MissingDuration { step: index + 1, mode: step.mode });
            }
            steps.push(step);
        }
        Ok(Script { steps })
    }
}

/// Parses one `mode[:duration]` step; `number` is only for error messages.
fn parse_step(number: usize, text: &str) -> Result<Step, ScriptError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ScriptError::EmptyStep { step: number });
    }
    let (mode_text, duration_text) = match text.split_once(':') {
        Some((mode, duration)) => (mode.trim(), Some(duration.trim())),
        None => (text, None),
    };
    let mode = mode_text
        .parse::<Mode>()
        .map_err(|source| ScriptError::UnknownMode { step: number, source })?;
    let duration = duration_text.map(|d| parse_step_duration(number, d)).transpose()?;
    Ok(Step { mode, duration })
}

fn parse_step_duration(number: usize, text: &str) -> Result<Duration, ScriptError> {
    let duration = humantime::parse_duration(text).map_err(|e| ScriptError::BadDuration {
        step: number,
        text: text.to_owned(),
        reason: e.to_string(),
    })?;
    if duration.is_zero() {
        return Err(ScriptError::ZeroDuration { step: number });
    }
    Ok(duration)
}

impl Script {
    /// The steps in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The mode the script starts in.
    pub fn first_mode(&self) -> Mode {
        self.steps[0].mode
    }

    /// When each step after the first starts, measured from the start of the script, with the
    /// step's index: the moments a watcher has to wake up to log a mode change.
    pub fn step_starts(&self) -> Vec<(Duration, usize)> {
        let mut at = Duration::ZERO;
        let mut starts = Vec::with_capacity(self.steps.len().saturating_sub(1));
        for (index, previous) in self.steps.iter().enumerate().take(self.steps.len() - 1) {
            // Every step but the last has a duration (type invariant), so this never adds 0.
            at += previous.duration.unwrap_or_default();
            starts.push((at, index + 1));
        }
        starts
    }

    /// Index of the step in force `elapsed` after the script started; a step owns the instant
    /// it starts at, so at exactly `20s` "ok:20s,down" is already down.
    pub fn step_at(&self, elapsed: Duration) -> usize {
        let mut end = Duration::ZERO;
        for (index, step) in self.steps.iter().enumerate() {
            match step.duration {
                Some(duration) => {
                    end += duration;
                    if elapsed < end {
                        return index;
                    }
                }
                None => return index,
            }
        }
        self.steps.len() - 1
    }
}

/// The mode `elapsed` after the script started; after the last timed step it stays in that
/// step's mode.
pub fn mode_at(script: &Script, elapsed: Duration) -> Mode {
    script.steps[script.step_at(elapsed)].mode
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(text: &str) -> Script {
        text.parse().unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_steps_with_and_without_a_final_duration() {
        let s = script("ok:20s, down:500ms ,ok");
        assert_eq!(
            s.steps(),
            [
                Step { mode: Mode::Ok, duration: Some(Duration::from_secs(20)) },
                Step { mode: Mode::Down, duration: Some(ms(500)) },
                Step { mode: Mode::Ok, duration: None },
            ]
        );
    }

    #[test]
    fn minutes_are_accepted() {
        assert_eq!(script("slow:2m").steps()[0].duration, Some(Duration::from_secs(120)));
    }

    #[test]
    fn mode_follows_the_steps_and_stays_on_the_open_last_step() {
        let s = script("ok:20s,down:15s,ok");
        assert_eq!(mode_at(&s, Duration::ZERO), Mode::Ok, "starts in the first step");
        assert_eq!(mode_at(&s, ms(19_999)), Mode::Ok, "just before the first boundary");
        assert_eq!(mode_at(&s, ms(20_000)), Mode::Down, "a step owns the instant it starts");
        assert_eq!(mode_at(&s, ms(34_999)), Mode::Down, "end of the outage");
        assert_eq!(mode_at(&s, ms(35_000)), Mode::Ok, "recovered");
        assert_eq!(mode_at(&s, Duration::from_secs(86_400)), Mode::Ok, "stays there");
    }

    #[test]
    fn all_timed_steps_stay_on_the_last_mode_after_the_end() {
        let s = script("ok:1s,error:1s");
        assert_eq!(mode_at(&s, ms(1_500)), Mode::Error, "inside the last step");
        assert_eq!(mode_at(&s, Duration::from_secs(3_600)), Mode::Error, "long after the end");
    }

    #[test]
    fn a_single_open_step_is_a_constant_mode() {
        let s = script("flap");
        assert_eq!(mode_at(&s, Duration::from_secs(1_000)), Mode::Flap);
        assert!(s.step_starts().is_empty(), "nothing ever changes");
    }

    #[test]
    fn step_starts_are_cumulative() {
        let s = script("ok:300ms,down:200ms,error");
        assert_eq!(s.step_starts(), [(ms(300), 1), (ms(500), 2)]);
    }

    #[test]
    fn rejects_unknown_mode_naming_the_step_and_the_choices() {
        let err = "ok:1s,sleepy:2s".parse::<Script>().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("step 2: unknown mode 'sleepy' (valid modes: {})", Mode::valid_names())
        );
    }

    #[test]
    fn rejects_bad_durations() {
        let err = "ok:5x".parse::<Script>().unwrap_err();
        assert!(matches!(err, ScriptError::BadDuration { step: 1, .. }), "{err:?}");
        let err = "ok:".parse::<Script>().unwrap_err();
        assert!(matches!(err, ScriptError::BadDuration { step: 1, .. }), "empty duration: {err:?}");
        let err = "ok:0s,down".parse::<Script>().unwrap_err();
        assert_eq!(err, ScriptError::ZeroDuration { step: 1 });
    }

    #[test]
    fn only_the_last_step_may_omit_its_duration() {
        let err = "ok,down:5s".parse::<Script>().unwrap_err();
        assert_eq!(err, ScriptError::MissingDuration { step: 1, mode: Mode::Ok });
    }

    #[test]
    fn rejects_empty_scripts_and_steps() {
        assert_eq!("  ".parse::<Script>().unwrap_err(), ScriptError::Empty);
        assert_eq!(
            "ok:1s,,down".parse::<Script>().unwrap_err(),
            ScriptError::EmptyStep { step: 2 }
        );
        assert_eq!("ok:1s,".parse::<Script>().unwrap_err(), ScriptError::EmptyStep { step: 2 });
    }
}
