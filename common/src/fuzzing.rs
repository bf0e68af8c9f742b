//! Entry points for the fuzz targets of `fuzz/` that read the domain's files and messages
//! (compiled only under `--cfg fuzzing`, which `cargo fuzz` sets): each parser fed arbitrary
//! bytes, with the round trips that must hold asserted. A panic here is a bug.

use std::path::Path;

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
