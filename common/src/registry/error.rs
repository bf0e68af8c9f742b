//! What can go wrong talking to a registry, and whether trying again can help.

use std::time::Duration;

use crate::digest::Digest;

/// Whether an error may pass if the same request is made again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Connection failures, timeouts, 408, 429, 5xx: retry with backoff.
    Transient,
    /// Everything else: retrying gives the same answer.
    Permanent,
}

/// An error from a registry operation. Messages name the registry and the operation, never a
/// credential.
#[derive(Debug, thiserror::Error)]
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
    /// The request did not get an answer: connect, reset, timeout, broken body.
    #[error("{registry}: {operation}: {message}")]
    Network {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// What failed, without URLs carrying credentials.
        message: String,
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
    /// The Docker config or a credential helper could not be read.
    #[error("credentials for {registry}: {message}")]
    Credentials {
        /// Registry host.
        registry: String,
        /// What went wrong.
        message: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl RegistryError {
    /// A request to `registry` that got no answer, or failed its TLS handshake.
    pub(crate) fn network(registry: &str, operation: &str, err: &reqwest::Error) -> Self {
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
        Self::Network {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            message: network_message(err),
        }
    }

    /// Whether trying again may help.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Status { status, .. } if is_transient_status(*status) => ErrorClass::Transient,
            Self::Network { .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether trying again may help.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// A short stable name for reports and metrics: `transient`, `not_found`, `auth`,
    /// `digest_mismatch`, `protocol`, `credentials`, `tls`, `http_<status>`.
    pub fn kind(&self) -> String {
        match self {
            Self::Status { status, .. } if is_transient_status(*status) => "transient".into(),
            Self::Status { status, .. } => format!("http_{status}"),
            Self::Network { .. } => "transient".into(),
            Self::Tls { .. } => "tls".into(),
            Self::Auth { .. } => "auth".into(),
            Self::NotFound { .. } => "not_found".into(),
            Self::DigestMismatch { .. } => "digest_mismatch".into(),
            Self::Protocol { .. } => "protocol".into(),
            Self::Credentials { .. } => "credentials".into(),
        }
    }

    /// A finer name for metrics of retries: `http_<status>` for any status, `network` for a
    /// connection that failed, else [`kind`](Self::kind).
    pub fn retry_class(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("http_{status}"),
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

    /// The registry host the error is about.
    pub fn registry(&self) -> &str {
        match self {
            Self::Status { registry, .. }
            | Self::Network { registry, .. }
            | Self::Tls { registry, .. }
            | Self::Auth { registry, .. }
            | Self::NotFound { registry, .. }
            | Self::DigestMismatch { registry, .. }
            | Self::Protocol { registry, .. }
            | Self::Credentials { registry, .. } => registry,
        }
    }
}

/// 408, 429 and 5xx may pass on a later try.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
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
