//! Entry points for the fuzz targets of `fuzz/` (compiled only under `--cfg fuzzing`, which
//! `cargo fuzz` sets): every parser of untrusted input, each fed arbitrary bytes, with the
//! round trips that must hold asserted. A panic here is a bug.

use std::path::Path;

use bytes::Bytes;

use crate::registry::challenge::Challenge;
use crate::registry::manifest::Manifest;
use crate::{Config, ImageRef, ImagesList, JobEvent, MirrorJob};

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Image references: what parses displays as a reference that parses to the same.
pub fn reference(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(r) = s.parse::<ImageRef>() {
        let shown = r.to_string();
        let again: ImageRef = shown
            .parse()
            .unwrap_or_else(|e| panic!("{shown:?} (from {s:?}) does not parse: {e}"));
        assert_eq!(again, r, "{s:?} -> {shown:?}");
        let _ = r.short();
        let _ = r.reference();
    }
}

/// images-list: what parses is written byte for byte, and sorting keeps it parseable.
pub fn images_list(data: &[u8]) {
    if let Ok(mut list) = ImagesList::parse(data) {
        assert_eq!(
            list.to_bytes(),
            data,
            "a parsed list is not written as it was read"
        );
        let _ = list.first_disorder();
        list.sort();
        let sorted = list.to_bytes();
        let again = ImagesList::parse(&sorted).expect("a sorted list parses");
        assert_eq!(
            again.first_disorder(),
            None,
            "a sorted list is out of order"
        );
    }
}

/// config.json.
pub fn config(data: &[u8]) {
    let _ = Config::parse(data, Path::new("config.json"));
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
    let _ = crate::registry::referrers::entries(data);
}

/// `WWW-Authenticate`, `Link`, `Range`, `Retry-After`, `ratelimit-*` headers, registry
/// error messages and sizes.
pub fn headers(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let _ = Challenge::parse(s);
    let _ = crate::registry::tags::next_link(s);
    let _ = crate::registry::blob::range_end_of(s);
    let _ = crate::registry::retry::parse_retry_after(s);
    let _ = crate::registry::ratelimit::parse_quota(s);
    let _ = crate::registry::upload_limits::limit_in_message(s);
    let _ = crate::registry::upload_limits::says_too_large(s);
    let _ = crate::registry::upload_limits::parse_size(s);
}

/// Token answers.
pub fn token_answer(data: &[u8]) {
    let _ = crate::registry::token::read_answer(data);
}

/// AMQP message bodies: jobs and events; what reads is written and read back the same.
pub fn message(data: &[u8]) {
    if let Ok(job) = MirrorJob::from_json(data) {
        let again = MirrorJob::from_json(&job.to_json()).expect("a job written reads back");
        assert_eq!(again.id, job.id);
    }
    if let Ok(event) = JobEvent::from_json(data) {
        let again = JobEvent::from_json(&event.to_json()).expect("an event written reads back");
        assert_eq!(again.job_id, event.job_id);
    }
}

/// Docker config files.
pub fn docker_config(data: &[u8]) {
    let _ = crate::registry::DockerConfig::parse(data, Path::new("config.json"));
}

/// GitHub answers (releases, contents, pull requests), as the client reads them.
pub fn github(data: &[u8]) {
    crate::github::fuzz_answers(data);
}
