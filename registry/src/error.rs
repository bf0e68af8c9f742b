//! What can go wrong talking to a registry, and whether trying again can help.

use std::time::Duration;

use image_mirror_common::digest::Digest;

/// Whether an error may pass if the same request is made again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Broken connections, timeouts, 408, 429, 5xx: retry with backoff.
    Transient,
    /// The host cannot be reached at all (its name does not resolve, the connection is
    /// refused or never completes): tried again briefly, then reported; a fleet worker tries
    /// the job again later, a one-off run does not.
    Unreachable,
    /// The registry's rate limit is spent for longer than the process waits: the job is
    /// deferred until the quota is expected back (neither a failure nor a retry).
    Deferred,
    /// Everything else: retrying gives the same answer.
    Permanent,
}

/// How a request that got no whole answer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkFailure {
    /// The request's deadline passed.
    Timeout,
    /// A blob body stopped moving (the stall watchdog).
    Stalled,
    /// The connection broke, or the body ended early.
    Broken,
}

/// Why a host cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Its name does not resolve.
    Dns,
    /// It refuses connections.
    Refused,
    /// Connecting to it does not complete in time.
    ConnectTimeout,
}

/// An error from a registry operation. Messages name the registry and the operation, never a
/// credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an unexpected HTTP status.
    #[error("{registry}: {operation}: HTTP {status}{}", detail_suffix(.detail))]
    Status {
        /// Registry host.
        registry: String,
        /// What was being done, such as `GET manifest library/traefik:v3`.
        operation: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's error text, shortened.
        detail: String,
        /// The `Retry-After` delay the registry asked for.
        retry_after: Option<Duration>,
    },
    /// The request did not get a whole answer: a reset, a deadline, a broken or stalled body.
    #[error("{registry}: {operation}: {message}")]
    Network {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// What failed, without URLs carrying credentials.
        message: String,
        /// Which way it failed.
        failure: NetworkFailure,
    },
    /// The host cannot be reached: it does not resolve, refuses connections, or does not
    /// complete them.
    #[error("{host}: {}", unreachable_text(*.why, .host))]
    Unreachable {
        /// The host (the registry's, or the one a registry sent us to).
        host: String,
        /// Registry host the request was for.
        registry: String,
        /// Why.
        why: Unreachable,
    },
    /// The TLS handshake failed: a certificate not trusted or not valid for the host, or a
    /// server that does not speak TLS. Trying again gives the same answer.
    #[error("{registry}: {operation}: TLS: {message}")]
    Tls {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// What the TLS layer reported.
        message: String,
    },
    /// Credentials were refused, or are needed and missing.
    #[error("{registry}: {operation}: authentication failed (HTTP {status}): {message}")]
    Auth {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// 401 or 403.
        status: u16,
        /// What the registry said, or which credentials are missing.
        message: String,
    },
    /// The manifest or blob does not exist.
    #[error("{registry}: {operation}: not found")]
    NotFound {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
    },
    /// Content did not hash to the digest it was asked for by.
    #[error("{registry}: digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Registry host the bytes came from.
        registry: String,
        /// Which content (`blob sha256:…`, `manifest library/traefik:v3`).
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The registry's answer breaks the protocol or a limit of ours.
    #[error("{registry}: {operation}: {message}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// What is wrong.
        message: String,
    },
    /// The registry refused a token in the middle of an operation that cannot be repeated as
    /// it was (a streamed upload); a new token was fetched, and the operation may go on.
    #[error("{registry}: {operation}: the token was refused; a new one was fetched")]
    TokenRenewed {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
    },
    /// The registry's rate limit is spent, and will not be back within the longest wait.
    #[error("{registry}: {message}")]
    RateLimited {
        /// Registry host.
        registry: String,
        /// The limit and when it is expected back.
        message: String,
        /// How long until the quota is expected back.
        reset_in: Duration,
    },
    /// The registry refused an upload request as too large (413, or GHCR's 416).
    #[error("{registry}: {operation}: the registry refused a request of {} as too large{}{}", mib(*.sent), .limit.map(|l| format!(" (its limit: {})", mib(l))).unwrap_or_default(), detail_suffix(.detail))]
    TooLarge {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// The bytes the refused request carried.
        sent: u64,
        /// The limit the registry stated, when it did.
        limit: Option<u64>,
        /// The registry's error text, shortened.
        detail: String,
    },
    /// The Docker config or a credential helper could not be read.
    #[error("credentials for {registry}: {message}")]
    Credentials {
        /// Registry host.
        registry: String,
        /// What went wrong.
        message: String,
    },
}

fn unreachable_text(why: Unreachable, _host: &str) -> &'static str {
    match why {
        Unreachable::Dns => "the host name does not resolve (is this machine online?)",
        Unreachable::Refused => "the host refuses connections (is the registry running?)",
        Unreachable::ConnectTimeout => {
            "the host does not answer connection attempts (a firewall, or no route to it?)"
        }
    }
}

/// A size in MiB, as people read it.
fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl RegistryError {
    /// A request to `registry` (at `host`) that got no answer: its TLS handshake failed, the
    /// host could not be reached, the deadline passed, or the connection broke.
    pub(crate) fn network(registry: &str, operation: &str, err: &reqwest::Error) -> Self {
        Self::network_at(registry, registry, operation, err)
    }

    /// Like [`network`](Self::network) for a request to `host`, which may not be the
    /// registry's own (a token realm, a redirect).
    pub(crate) fn network_at(
        host: &str,
        registry: &str,
        operation: &str,
        err: &reqwest::Error,
    ) -> Self {
        if let Some(why) = unreachable_cause(err) {
            return Self::Unreachable {
                host: host.to_owned(),
                registry: registry.to_owned(),
                why,
            };
        }
        if let Some(tls) = tls_error(err) {
            let hint = match tls {
                rustls::Error::InvalidMessage(_) => {
                    " (a registry served over plain HTTP must be named as insecure)"
                }
                _ => "",
            };
            return Self::Tls {
                registry: registry.to_owned(),
                operation: operation.to_owned(),
                message: format!("{tls}{hint}"),
            };
        }
        let failure = if err.is_timeout() {
            NetworkFailure::Timeout
        } else {
            NetworkFailure::Broken
        };
        Self::Network {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            message: network_message(err),
            failure,
        }
    }

    /// A request that ran out of its deadline.
    pub(crate) fn timeout(registry: &str, operation: &str, deadline: Duration) -> Self {
        Self::Network {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            message: format!(
                "no whole answer within {}s (the request timeout)",
                deadline.as_secs()
            ),
            failure: NetworkFailure::Timeout,
        }
    }

    /// Whether this is a request that ran out of time (deadline or stall).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::Network {
                failure: NetworkFailure::Timeout | NetworkFailure::Stalled,
                ..
            }
        )
    }

    /// Whether trying again may help.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Status { status, .. } if is_transient_status(*status) => ErrorClass::Transient,
            Self::Network { .. } | Self::TokenRenewed { .. } => ErrorClass::Transient,
            Self::Unreachable { .. } => ErrorClass::Unreachable,
            Self::RateLimited { .. } => ErrorClass::Deferred,
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether trying again may help.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// A short stable name for reports and metrics: `transient`, `not_found`, `auth`,
    /// `digest_mismatch`, `protocol`, `credentials`, `tls`, `too_large`, `http_<status>`.
    pub fn kind(&self) -> String {
        match self {
            Self::Status { status, .. } if is_transient_status(*status) => "transient".into(),
            Self::Status { status, .. } => format!("http_{status}"),
            Self::Network { .. } | Self::TokenRenewed { .. } => "transient".into(),
            Self::Unreachable { .. } => "unreachable".into(),
            Self::RateLimited { .. } => "rate_limited".into(),
            Self::Tls { .. } => "tls".into(),
            Self::Auth { .. } => "auth".into(),
            Self::NotFound { .. } => "not_found".into(),
            Self::DigestMismatch { .. } => "digest_mismatch".into(),
            Self::Protocol { .. } => "protocol".into(),
            Self::Credentials { .. } => "credentials".into(),
            Self::TooLarge { .. } => "too_large".into(),
        }
    }

    /// A finer name for metrics of retries: `http_<status>` for any status, `network` for a
    /// connection that failed, else [`kind`](Self::kind).
    pub fn retry_class(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("http_{status}"),
            Self::Network {
                failure: NetworkFailure::Timeout,
                ..
            } => "timeout".into(),
            Self::Network {
                failure: NetworkFailure::Stalled,
                ..
            } => "stalled".into(),
            Self::Network { .. } => "network".into(),
            other => other.kind(),
        }
    }

    /// The delay the registry asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// How long until a spent rate limit is expected back, for a deferred request.
    pub fn deferred_for(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { reset_in, .. } => Some(*reset_in),
            _ => None,
        }
    }

    /// The registry host the error is about.
    pub fn registry(&self) -> &str {
        match self {
            Self::Status { registry, .. }
            | Self::Network { registry, .. }
            | Self::Unreachable { registry, .. }
            | Self::TokenRenewed { registry, .. }
            | Self::RateLimited { registry, .. }
            | Self::Tls { registry, .. }
            | Self::Auth { registry, .. }
            | Self::NotFound { registry, .. }
            | Self::DigestMismatch { registry, .. }
            | Self::Protocol { registry, .. }
            | Self::TooLarge { registry, .. }
            | Self::Credentials { registry, .. } => registry,
        }
    }
}

/// 408, 429 and 5xx may pass on a later try.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Why the host of a request that failed to connect cannot be reached, when that is how it
/// failed: the name did not resolve, the connection was refused, or connecting timed out.
fn unreachable_cause(err: &reqwest::Error) -> Option<Unreachable> {
    if !err.is_connect() {
        return None;
    }
    if tls_error(err).is_some() {
        return None;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some(Unreachable::Refused),
                std::io::ErrorKind::TimedOut => return Some(Unreachable::ConnectTimeout),
                _ => {}
            }
        }
        if e.to_string().starts_with("dns error") {
            return Some(Unreachable::Dns);
        }
        source = e.source();
    }
    if err.is_timeout() {
        return Some(Unreachable::ConnectTimeout);
    }
    None
}

/// The rustls error somewhere in `err`'s chain of sources. I/O errors carry theirs inside,
/// sometimes one in another, where `source()` does not reach.
fn tls_error(err: &reqwest::Error) -> Option<&rustls::Error> {
    fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|i| find(i));
        inner.or_else(|| e.source().and_then(find))
    }
    find(err)
}

/// A network error's text without the URL reqwest adds (it may carry upload state).
pub(crate) fn network_message(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        let text = e.to_string();
        let text = match text.find(" for url (") {
            Some(i) => text[..i].to_owned(),
            None => text,
        };
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> RegistryError {
        RegistryError::Status {
            registry: "r".into(),
            operation: "op".into(),
            status: code,
            detail: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn classes() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 404, 405, 409, 413] {
            assert!(!status(code).is_transient(), "{code}");
        }
        assert_eq!(status(503).kind(), "transient");
        assert_eq!(status(400).kind(), "http_400");
        assert_eq!(status(503).to_string(), "r: op: HTTP 503");
    }
}
