//! Gathering deliveries into batches: a batch starts with the first delivery after a quiet
//! time and ends when its window has passed since then or when it is full.

use std::future::Future;
use std::time::Duration;

use image_mirror_queue::{Consumer, Delivery, QueueError};

/// The shortest batch window whose opening is logged at INFO.
const NOTICEABLE_WINDOW: Duration = Duration::from_secs(1);

/// How batches are cut.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// How long a batch stays open after its first delivery.
    pub window: Duration,
    /// The most deliveries in one batch (the consumer's prefetch must allow as many).
    pub max: usize,
    /// A run's committer: the events it waits for in all. A batch that brings the count
    /// recorded to it closes at once, without waiting out its window.
    pub total: Option<usize>,
}

impl BatchOptions {
    /// A run's committer (`run`, `add-tag` in one process): short batches, so that the run
    /// ends soon after its last event.
    pub const RUN: Self = Self {
        window: Duration::from_millis(100),
        max: 256,
        total: None,
    };

    /// These options for a batch after `taken` deliveries were settled: no larger than what
    /// is left of the total.
    pub fn after(self, taken: usize) -> Self {
        match self.total {
            Some(total) => Self {
                max: self.max.min(total.saturating_sub(taken).max(1)),
                ..self
            },
            None => self,
        }
    }
}

/// The next batch, or `None` when the consumer ended or `stop` completed before a batch
/// began. A batch that has begun is returned when `stop` completes, for its owner to settle.
pub async fn next_batch(
    consumer: &mut Consumer,
    options: BatchOptions,
    stop: impl Future<Output = ()>,
) -> Result<Option<Vec<Delivery>>, QueueError> {
    tokio::pin!(stop);
    let first = tokio::select! {
        d = consumer.next() => d,
        () = &mut stop => return Ok(None),
    };
    let Some(first) = first else {
        return Ok(None);
    };
    let mut batch = vec![first?];
    // A window a person could notice is announced; a run's short ones are not.
    let window_ms = options.window.as_millis() as u64;
    if options.window >= NOTICEABLE_WINDOW {
        tracing::info!(window_ms, max = options.max, "batch opened");
    } else {
        tracing::debug!(window_ms, max = options.max, "batch opened");
    }
    let deadline = tokio::time::Instant::now() + options.window;
    while batch.len() < options.max.max(1) {
        tokio::select! {
            d = consumer.next() => match d {
                Some(d) => batch.push(d?),
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => break,
            () = &mut stop => break,
        }
    }
    Ok(Some(batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_s_batches_are_never_larger_than_what_is_left_of_its_total() {
        let run = BatchOptions {
            total: Some(300),
            ..BatchOptions::RUN
        };
        assert_eq!(run.after(0).max, 256);
        assert_eq!(run.after(256).max, 44);
        assert_eq!(
            run.after(300).max,
            1,
            "never zero: a late event still comes in"
        );
        assert_eq!(
            BatchOptions::RUN.after(10_000).max,
            256,
            "a fleet's has no total"
        );
    }
}
