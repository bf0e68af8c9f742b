//! Stopping copies well. When a process is asked to stop (Ctrl-C, SIGTERM), its copies stop
//! taking new steps; a blob going up in chunks is given [`CHECKPOINT_GRACE`] to finish the
//! chunk in flight (so that the registry confirms where the upload stands, and the next run
//! goes on from there), else the chunk is cut where it is; a blob going up in one request is
//! abandoned at once and its upload session deleted. Each such copy ends with
//! [`CopyError::Interrupted`](crate::CopyError::Interrupted).

use std::time::Duration;

use tokio::sync::watch;

/// How long a chunk in flight may take to finish after a stop.
pub const CHECKPOINT_GRACE: Duration = Duration::from_secs(2);

/// Tells copies to stop; cheap to clone, every clone the same signal.
#[derive(Debug, Clone)]
pub struct StopSignal {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignal {
    /// A signal not given yet.
    pub fn new() -> Self {
        Self {
            tx: std::sync::Arc::new(watch::Sender::new(false)),
        }
    }

    /// Tells every copy to stop.
    pub fn stop(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the signal was given.
    pub fn is_stopped(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once the signal is given.
    pub async fn stopped(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_hears_the_signal() {
        let signal = StopSignal::new();
        let heard = tokio::spawn({
            let s = signal.clone();
            async move { s.stopped().await }
        });
        assert!(!signal.is_stopped());
        signal.stop();
        tokio::time::timeout(Duration::from_secs(5), heard)
            .await
            .expect("heard in time")
            .expect("ran");
        assert!(signal.clone().is_stopped());
        // Given already: completes at once.
        signal.stopped().await;
    }
}
