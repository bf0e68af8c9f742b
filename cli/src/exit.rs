//! Exit statuses and the error that carries "bad input" (exit 2) from a command to `main`.

use std::process::ExitCode;

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

/// The exit status for an error that ended a command.
pub fn code_for(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<BadInput>()) {
        ExitCode::from(BAD_INPUT)
    } else {
        ExitCode::from(FAILED)
    }
}
