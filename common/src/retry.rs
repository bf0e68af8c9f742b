//! The one retry vocabulary of image-mirror: a [`RetryPolicy`] is a backoff shape (a first
//! delay doubled with each failure up to a longest delay, plus up to a quarter at random, and
//! how many retries), and [`RetryPolicy::run`] retries an operation whose error says whether
//! another try may help ([`Transient`]). Each layer keeps its own policy (registry requests,
//! GitHub calls, blob transfers that resume, the broker's reconnections, the fleet's
//! listening); none writes a backoff of its own.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, Retryable};

/// The longest `Retry-After` honoured; a server asking for more gets this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Longest computed delay.
    pub max_delay: Duration,
    /// Retries after the first try.
    pub max_retries: usize,
}

/// What a retried operation's error tells the policy.
pub trait Transient {
    /// Whether another try may succeed.
    fn is_transient(&self) -> bool;
    /// Whether the try ran out of time (retried at most [`RetryPolicy::run`]'s
    /// `timeout_retries` times: a server that did not answer twice will not the third time).
    fn is_timeout(&self) -> bool {
        false
    }
    /// The delay the server asked for; it wins over the computed one (at most
    /// [`RETRY_AFTER_CAP`]).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl RetryPolicy {
    /// A policy of `max_retries` retries from `min_delay` doubling to `max_delay`.
    pub const fn new(min_delay: Duration, max_delay: Duration, max_retries: usize) -> Self {
        Self {
            min_delay,
            max_delay,
            max_retries,
        }
    }

    /// The pause before retry number `failures` (1-based): the first delay doubled with each
    /// failure, at most the longest delay, plus up to a quarter of it at random so that a
    /// fleet that failed together does not come back together.
    pub fn delay(&self, failures: usize) -> Duration {
        let base = self.base_delay(failures);
        let spread = u64::try_from(base.as_micros() / 4).unwrap_or(u64::MAX);
        base + Duration::from_micros(rand::random_range(0..=spread))
    }

    /// [`delay`](Self::delay) without the random part, for a peer that needs exact pauses
    /// (lapin's reconnection, which does not come back from a jittered one).
    pub fn base_delay(&self, failures: usize) -> Duration {
        let exponent = u32::try_from(failures.saturating_sub(1).min(16)).unwrap_or(16);
        self.min_delay
            .saturating_mul(2_u32.pow(exponent))
            .min(self.max_delay)
    }

    /// Whether `failures` in a row are more than the policy retries.
    pub fn gives_up_after(&self, failures: usize) -> bool {
        failures > self.max_retries
    }

    /// Runs `op` until it succeeds, fails for good, or the retries run out (at most
    /// `timeout_retries` of them for timeouts). `on_retry` hears of each retry with its delay
    /// (for logs and metrics).
    pub async fn run<T, E, F, Fut>(
        &self,
        timeout_retries: usize,
        op: F,
        mut on_retry: impl FnMut(&E, Duration),
    ) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut timeouts = 0_usize;
        op.retry(*self)
            .when(|e: &E| {
                if e.is_timeout() {
                    timeouts += 1;
                    if timeouts > timeout_retries {
                        return false;
                    }
                }
                e.is_transient()
            })
            .adjust(|err: &E, computed| {
                computed.map(|d| match err.retry_after() {
                    Some(asked) => asked.min(RETRY_AFTER_CAP),
                    None => d,
                })
            })
            .notify(|err, delay| on_retry(err, delay))
            .await
    }
}

impl BackoffBuilder for RetryPolicy {
    type Backoff = Delays;

    fn build(self) -> Delays {
        Delays {
            policy: self,
            failures: 0,
        }
    }
}

/// The delays of one retried operation, as backon takes them: [`RetryPolicy::delay`] for each
/// failure, until the retries run out.
#[derive(Debug)]
pub struct Delays {
    policy: RetryPolicy,
    failures: usize,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failures += 1;
        (!self.policy.gives_up_after(self.failures)).then(|| self.policy.delay(self.failures))
    }
}

/// Reads a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Failure {
        transient: bool,
        timeout: bool,
        retry_after: Option<Duration>,
    }

    impl Transient for Failure {
        fn is_transient(&self) -> bool {
            self.transient
        }
        fn is_timeout(&self) -> bool {
            self.timeout
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry_after
        }
    }

    const TRANSIENT: Failure = Failure {
        transient: true,
        timeout: false,
        retry_after: None,
    };

    fn quick(max_retries: usize) -> RetryPolicy {
        RetryPolicy::new(
            Duration::from_millis(1),
            Duration::from_millis(5),
            max_retries,
        )
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[tokio::test]
    async fn transient_errors_retry_and_permanent_ones_do_not() {
        let calls = AtomicUsize::new(0);
        let mut delays = Vec::new();
        let out = quick(3)
            .run(
                2,
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(TRANSIENT)
                    } else {
                        Ok(7)
                    }
                },
                |_, d| delays.push(d),
            )
            .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(delays.len(), 2);

        calls.store(0, Ordering::SeqCst);
        let permanent = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Failure {
                transient: false,
                ..TRANSIENT
            })
        };
        assert!(quick(3).run(2, permanent, |_, _| {}).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let always = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(TRANSIENT)
        };
        assert!(quick(3).run(2, always, |_, _| {}).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4, "first try and 3 retries");
    }

    #[tokio::test]
    async fn timeouts_are_retried_fewer_times() {
        let calls = AtomicUsize::new(0);
        let timing_out = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Failure {
                timeout: true,
                ..TRANSIENT
            })
        };
        assert!(quick(6).run(2, timing_out, |_, _| {}).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "first try and 2 retries");
    }

    #[test]
    fn delays_double_up_to_the_cap_with_a_bounded_jitter() {
        let policy = RetryPolicy::new(Duration::from_millis(100), Duration::from_millis(1000), 6);
        for (failures, base) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            let d = policy.delay(failures);
            let base = Duration::from_millis(base);
            assert_eq!(policy.base_delay(failures), base);
            assert!(d >= base && d <= base + base / 4, "{failures}: {d:?}");
        }
        let delays: Vec<Duration> = policy.build().collect();
        assert_eq!(delays.len(), 6, "one delay per retry");
        assert!(policy.gives_up_after(7) && !policy.gives_up_after(6));
    }

    #[tokio::test]
    async fn retry_after_wins_over_the_computed_delay() {
        let calls = AtomicUsize::new(0);
        let mut delays = Vec::new();
        let _ = quick(2)
            .run(
                2,
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(Failure {
                            retry_after: Some(Duration::from_millis(40)),
                            ..TRANSIENT
                        })
                    } else {
                        Ok(())
                    }
                },
                |_, d| delays.push(d),
            )
            .await;
        assert_eq!(delays, [Duration::from_millis(40)]);
    }
}
