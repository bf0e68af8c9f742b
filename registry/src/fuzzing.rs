//! Entry points for the fuzz targets of `fuzz/` that read what registries send (compiled only
//! under `--cfg fuzzing`, which `cargo fuzz` sets): manifests, headers, token answers and
//! Docker config files, each fed arbitrary bytes. A panic here is a bug.

use std::path::Path;

use bytes::Bytes;

use crate::challenge::Challenge;
use crate::manifest::Manifest;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Manifests and indexes as registries send them (with and without a media type).
pub fn manifest(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    for content_type in [None, Some("application/vnd.oci.image.index.v1+json")] {
        if let Ok(m) = Manifest::from_bytes(body.clone(), content_type) {
            let _ = m.kind();
            let _ = m.children();
            let _ = m.blobs();
        }
    }
    let _ = crate::referrers::entries(data);
}

/// `WWW-Authenticate`, `Link`, `Range`, `Retry-After`, `ratelimit-*` headers, registry
/// error messages and sizes.
pub fn headers(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let _ = Challenge::parse(s);
    let _ = image_mirror_common::link_header::next_link(s);
    let _ = crate::blob::range_end_of(s);
    let _ = crate::retry::parse_retry_after(s);
    let _ = crate::ratelimit::parse_quota(s);
    let _ = crate::upload_limits::limit_in_message(s);
    let _ = crate::upload_limits::says_too_large(s);
    let _ = crate::upload_limits::parse_size(s);
}

/// Token answers.
pub fn token_answer(data: &[u8]) {
    let _ = crate::token::read_answer(data);
}

/// Docker config files.
pub fn docker_config(data: &[u8]) {
    let _ = crate::DockerConfig::parse(data, Path::new("config.json"));
}
