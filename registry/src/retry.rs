//! How the registry layer retries: its policy for requests ([`REQUESTS`]: 6 retries, 0.5 s
//! doubling to 30 s), used by every request retried here and by the copy engine's transfers
//! that resume, with at most [`TIMEOUT_RETRIES`] retries of a request that ran out of time,
//! and a registry's `Retry-After` winning over the computed delay. The shape itself is the
//! project's one ([`RetryPolicy`]).

use std::time::Duration;

pub use image_mirror_common::retry::{parse_retry_after, RetryPolicy, Transient};

use crate::error::RegistryError;

/// Retries of one request that ran out of time: a registry that does not answer within the
/// deadline twice in a row will not answer the third time either.
pub const TIMEOUT_RETRIES: usize = 2;

/// Registry requests and resumed transfers: 6 retries, 0.5 s doubling to 30 s.
pub const REQUESTS: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(500), Duration::from_secs(30), 6);

impl Transient for RegistryError {
    fn is_transient(&self) -> bool {
        RegistryError::is_transient(self)
    }

    fn is_timeout(&self) -> bool {
        RegistryError::is_timeout(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        RegistryError::retry_after(self)
    }
}
