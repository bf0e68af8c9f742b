//! The resume loop's decisions, written once for every transfer that resumes (a download
//! resumed with `Range`, an upload resumed at the registry's offset, a blob sent again in one
//! request): after a break, whether to go on (the registry layer's [`RetryPolicy`], reset by
//! every piece of progress) and after what pause, counted as a resume; a stop heard during
//! the pause ends the transfer at once.

use std::sync::atomic::AtomicU64;

use image_mirror_registry::RetryPolicy;

use crate::copy::report::Counters;
use crate::copy::stop::StopSignal;

/// Why a transfer does not go on.
pub(super) enum Halt {
    /// It broke more times in a row than the policy retries.
    GaveUp,
    /// The process is stopping.
    Stopped,
}

/// The breaks of one transfer in a row.
pub(super) struct Attempts<'a> {
    policy: RetryPolicy,
    failures: usize,
    resumes: &'a AtomicU64,
    stop: &'a StopSignal,
}

impl<'a> Attempts<'a> {
    pub(super) fn new(policy: RetryPolicy, resumes: &'a AtomicU64, stop: &'a StopSignal) -> Self {
        Self {
            policy,
            failures: 0,
            resumes,
            stop,
        }
    }

    /// The transfer moved on: the next break is the first in a row.
    pub(super) fn progressed(&mut self) {
        self.failures = 0;
    }

    /// The transfer broke for `reason` (logged at DEBUG with `what` and `offset`): waits the
    /// policy's pause, unless it gives up or a stop comes first.
    pub(super) async fn broke(
        &mut self,
        what: &str,
        offset: u64,
        reason: &str,
    ) -> Result<(), Halt> {
        self.failures += 1;
        if self.policy.gives_up_after(self.failures) {
            return Err(Halt::GaveUp);
        }
        tracing::debug!(what, offset, reason, "transfer broke; resuming");
        Counters::add(self.resumes, 1);
        tokio::select! {
            () = tokio::time::sleep(self.policy.delay(self.failures)) => Ok(()),
            () = self.stop.stopped() => Err(Halt::Stopped),
        }
    }
}
