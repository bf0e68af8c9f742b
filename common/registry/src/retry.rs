//! Retrying transient registry errors: the one backoff formula of the registry layer
//! ([`RetryPolicy::delay`]: exponential, capped, with jitter), used by every request retried
//! here and by the copy engine's transfers that resume, and where a `Retry-After` from the
//! registry always wins over the computed delay.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, Retryable};

use crate::error::RegistryError;

/// The longest `Retry-After` we honour; a registry asking for more gets this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// Retries of one request that ran out of time: a registry that does not answer within the
/// deadline twice in a row will not answer the third time either.
pub const TIMEOUT_RETRIES: usize = 2;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Longest computed delay.
    pub max_delay: Duration,
    /// Retries after the first try.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retries: 6,
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `failures` (1-based): the first delay doubled with each
    /// failure, at most the longest delay, plus up to a quarter of it at random so that a
    /// fleet that failed together does not come back together.
    pub fn delay(&self, failures: usize) -> Duration {
        let exponent = u32::try_from(failures.saturating_sub(1).min(16)).unwrap_or(16);
        let base = self
            .min_delay
            .saturating_mul(2_u32.pow(exponent))
            .min(self.max_delay);
        let spread = u64::try_from(base.as_micros() / 4).unwrap_or(u64::MAX);
        base + Duration::from_micros(rand::random_range(0..=spread))
    }

    /// Whether `failures` in a row are more than the policy retries.
    pub fn gives_up_after(&self, failures: usize) -> bool {
        failures > self.max_retries
    }

    /// Runs `op` until it succeeds, fails permanently, or the retries run out (at most
    /// [`TIMEOUT_RETRIES`] of them for timeouts). `on_retry` hears of each retry with its delay
    /// (for logs and metrics).
    pub async fn run<T, F, Fut>(
        &self,
        op: F,
        mut on_retry: impl FnMut(&RegistryError, Duration),
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut timeouts = 0_usize;
        op.retry(*self)
            .when(|e: &RegistryError| {
                if e.is_timeout() {
                    timeouts += 1;
                    if timeouts > TIMEOUT_RETRIES {
                        return false;
                    }
                }
                e.is_transient()
            })
            .adjust(|err: &RegistryError, computed| {
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn transient(retry_after: Option<Duration>) -> RegistryError {
        RegistryError::Status {
            registry: "r".into(),
            operation: "op".into(),
            status: 503,
            detail: String::new(),
            retry_after,
        }
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
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retries: 3,
        };
        let calls = AtomicUsize::new(0);
        let mut delays = Vec::new();
        let out = policy
            .run(
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(transient(None))
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
        let out: Result<(), _> = policy
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(RegistryError::NotFound {
                        registry: "r".into(),
                        operation: "op".into(),
                    })
                },
                |_, _| {},
            )
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let out: Result<(), _> = policy
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(transient(None))
                },
                |_, _| {},
            )
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4, "first try and 3 retries");
    }

    #[test]
    fn delays_double_up_to_the_cap_with_a_bounded_jitter() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retries: 6,
        };
        for (failures, base) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            let d = policy.delay(failures);
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base + base / 4, "{failures}: {d:?}");
        }
        let delays: Vec<Duration> = policy.build().collect();
        assert_eq!(delays.len(), 6, "one delay per retry");
        assert!(policy.gives_up_after(7) && !policy.gives_up_after(6));
    }

    #[tokio::test]
    async fn retry_after_wins_over_the_computed_delay() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retries: 2,
        };
        let calls = AtomicUsize::new(0);
        let mut delays = Vec::new();
        let _ = policy
            .run(
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(transient(Some(Duration::from_millis(40))))
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
