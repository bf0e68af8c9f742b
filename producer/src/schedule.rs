//! The producer's loop: a pass (sync, or discovery) now and then again on an interval until
//! the process is asked to stop. A pass that fails (images-list unreadable, the broker gone)
//! is reported and does not end the loop: the next may pass.

use std::future::Future;
use std::time::Duration;

/// Runs `pass` now and every `every` after, until `stop` completes; each pass's outcome goes
/// to `heard` before the wait.
pub async fn run_producer<Fut, E>(
    every: Duration,
    stop: impl Future<Output = ()>,
    mut pass: impl FnMut() -> Fut,
    mut heard: impl FnMut(Result<(), E>),
) where
    Fut: Future<Output = Result<(), E>>,
{
    tokio::pin!(stop);
    loop {
        // A pass under way is finished: the stop is heard between passes.
        let outcome = pass().await;
        heard(outcome);
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failed_pass_is_heard_and_the_next_one_runs_until_the_stop() {
        let passes = AtomicU32::new(0);
        let mut heard = Vec::new();
        let stop = tokio::time::sleep(Duration::from_secs(35));
        run_producer(
            Duration::from_secs(10),
            stop,
            || async {
                match passes.fetch_add(1, Ordering::SeqCst) {
                    1 => Err("the broker is gone"),
                    _ => Ok(()),
                }
            },
            |outcome| heard.push(outcome),
        )
        .await;
        // At 0, 10, 20 and 30 s; the stop at 35 s ends the wait.
        assert_eq!(heard, [Ok(()), Err("the broker is gone"), Ok(()), Ok(())]);
    }
}
