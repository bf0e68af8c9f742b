//! Exit statuses, the error that carries "bad input" (exit 2) from a command to `main`, and
//! how an error is shown.

use std::process::ExitCode;
use std::time::Duration;

use crate::console::{say, Level};

/// Everything done.
pub const OK: u8 = 0;
/// Something failed: a job, a check.
pub const FAILED: u8 = 1;
/// Bad usage or bad input.
pub const BAD_INPUT: u8 = 2;

/// Marks an error as the user's input being wrong: `main` exits 2 for it, 1 for anything else.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Writes `err` and its causes on stderr, a line each, as `error: …` (one JSON object with
/// `--log-format json`).
pub fn print_error(err: &anyhow::Error) {
    match crate::console::format() {
        crate::console::LogFormat::Text => {
            for line in format!("{err:#}").lines() {
                say(Level::Error, "error", format!("error: {line}"));
            }
        }
        crate::console::LogFormat::Json => say(Level::Error, "error", format!("{err:#}")),
    }
}

/// What a repeating producer says after each pass: its error, if any (the next pass may
/// succeed), then when `what` runs again.
pub fn after_pass(what: &'static str, every: Duration) -> impl FnMut(anyhow::Result<()>) {
    move |outcome| {
        if let Err(e) = outcome {
            print_error(&e);
        }
        crate::outln!("next {what} in {}s", every.as_secs());
    }
}

/// The exit status for an error that ended a command.
pub fn code_for(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<BadInput>()) {
        ExitCode::from(BAD_INPUT)
    } else {
        ExitCode::from(FAILED)
    }
}
