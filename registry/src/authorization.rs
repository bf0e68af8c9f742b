//! The `Authorization` value a request to a registry's own origin carries, Basic or Bearer,
//! marked sensitive so that it never shows in a debug print.

use reqwest::header::HeaderValue;

use image_mirror_common::secret::Secret;

/// An `Authorization` value, with the token it carries (to tell a rejected token from one
/// fetched since).
#[derive(Debug, Clone)]
pub(crate) struct Authorization {
    pub(crate) header: HeaderValue,
    pub(crate) token: Option<Secret>,
}

pub(crate) fn basic_auth_header(user: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}

pub(crate) fn bearer_header(token: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    v.set_sensitive(true);
    v
}
