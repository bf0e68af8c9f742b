//! The one policy for job attempts: how long a job that failed for now waits before each
//! retry, and so how many attempts it gets (the first and one per delay). Every delay is a
//! delay queue of the broker (`<prefix>.jobs.retry.<n>`, its messages living that long), so
//! every role sharing a prefix must use the same delays: RabbitMQ refuses a queue declared
//! again with another lifetime.

use std::time::Duration;

/// Delays before each retry of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRetries {
    delays: Vec<Duration>,
}

impl Default for JobRetries {
    /// 10 s, 30 s, 2 min, 10 min, 30 min: six attempts over about 45 minutes.
    fn default() -> Self {
        Self::of_secs(&[10, 30, 120, 600, 1800])
    }
}

/// Why a list of delays cannot be a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retry delays {given:?}: {why}")]
pub struct JobRetriesError {
    given: String,
    why: String,
}

impl JobRetries {
    /// Retry `n` (1-based) waits `delays[n - 1]`; at least one delay, none of them zero.
    pub fn new(delays: Vec<Duration>) -> Result<Self, JobRetriesError> {
        let refuse = |why: &str| JobRetriesError {
            given: format!("{delays:?}"),
            why: why.to_owned(),
        };
        if delays.is_empty() {
            return Err(refuse("at least one delay is needed"));
        }
        if delays.iter().any(Duration::is_zero) {
            return Err(refuse("a delay of zero would retry at once"));
        }
        Ok(Self { delays })
    }

    /// The delays of a run in one process: it waits less than a fleet does. 2 s, 5 s, 15 s,
    /// 30 s, 1 min.
    pub fn in_process() -> Self {
        Self::of_secs(&[2, 5, 15, 30, 60])
    }

    fn of_secs(secs: &[u64]) -> Self {
        Self {
            delays: secs.iter().copied().map(Duration::from_secs).collect(),
        }
    }

    /// Reads `10s,30s,2m,10m,30m` (durations as every flag writes them).
    pub fn parse(text: &str) -> Result<Self, JobRetriesError> {
        let delays = text
            .split(',')
            .map(|item| image_mirror_common::duration::parse(item.trim()))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|why| JobRetriesError {
                given: text.to_owned(),
                why,
            })?;
        Self::new(delays).map_err(|e| JobRetriesError {
            given: text.to_owned(),
            why: e.why,
        })
    }

    /// The delays, retry 1 first.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The attempts a job gets: the first and one per delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).map_or(u32::MAX, |n| n.saturating_add(1))
    }

    /// The delay before retry `retry` (1-based), or `None` when the attempts are spent.
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        let i = usize::try_from(retry).ok()?.checked_sub(1)?;
        self.delays.get(i).copied()
    }

    /// The retry level (1-based) a job deferred for `wait` waits in: the longest delay not
    /// over `wait` (the shortest when `wait` is shorter). A job back early is deferred again.
    pub fn deferral_level(&self, wait: Duration) -> usize {
        self.delays
            .iter()
            .rposition(|d| *d <= wait)
            .map_or(1, |i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_read_and_attempts_follow() {
        let r = JobRetries::parse("500ms, 2s,1m,1h").unwrap();
        assert_eq!(
            r.delays(),
            [
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(60),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(r.max_attempts(), 5);
        assert_eq!(r.delay(1), Some(Duration::from_millis(500)));
        assert_eq!(r.delay(4), Some(Duration::from_secs(3600)));
        assert_eq!(r.delay(5), None);
        assert_eq!(r.delay(0), None);
        assert_eq!(JobRetries::default().max_attempts(), 6);
        assert_eq!(JobRetries::in_process().max_attempts(), 6);
        // Plain seconds, as every duration flag reads them.
        assert_eq!(
            JobRetries::parse("10,1d").unwrap().delays()[1],
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn bad_delays_are_named() {
        for bad in ["", "10x", "0s", "1s,,2s"] {
            let err = JobRetries::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn a_deferral_waits_at_the_longest_level_not_over_its_wait() {
        let r = JobRetries::default();
        assert_eq!(r.deferral_level(Duration::from_secs(1)), 1);
        assert_eq!(r.deferral_level(Duration::from_secs(30)), 2);
        assert_eq!(r.deferral_level(Duration::from_secs(599)), 3);
        assert_eq!(r.deferral_level(Duration::from_secs(86_400)), 5);
    }
}
