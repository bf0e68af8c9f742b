//! How large the requests of a blob upload may be (and whether an index may list manifests
//! the registry does not hold), as a property of each registry rather than a constant: what is known of some hosts, what the user set (regclient's per-host
//! `blobChunk` and `blobMax`), and what a registry taught this process by refusing a body as
//! too large or by reporting a `Range` that does not move. What was learned is kept for the
//! life of the process, so only the first blob at a registry pays for it, and each lesson is
//! offered to whoever listens ([`UploadLimits::lessons`]): a fleet shares them the way it
//! shares blob locations, so only the first blob of the fleet pays.
//!
//! Publicly reported limits (the sources are in ARCHITECTURE.md, "Where registries differ"):
//! GHCR refuses request bodies over 4 MiB (`416`, "the request body is too large and exceeds
//! the maximum permissible limit of 4.00MiB"); ECR wants parts other than the last of at
//! least 5 MiB, and its `Range` can stop advancing after the first `PATCH`.

use image_mirror_common::lesson::Lesson;
use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

const MIB: u64 = 1024 * 1024;

/// A learned request limit is never lowered below this.
pub const MIN_REQUEST_LIMIT: u64 = MIB;

/// Bytes per request of a chunked upload, unless the registry or the user says otherwise: a
/// cut or a killed worker costs at most this much again (BENCHMARKS.md weighs it against
/// 64 MiB).
pub const DEFAULT_CHUNK: u64 = 16 * MIB;
/// The largest blob sent in one request, unless the registry or the user says otherwise.
pub const DEFAULT_BLOB_MAX: u64 = 16 * MIB;

/// The sizes the user set for one registry (flags `--blob-chunk`, `--blob-max`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadSettings {
    /// Bytes per request of a chunked upload (regclient's `blobChunk`).
    pub chunk: Option<u64>,
    /// The largest blob sent in one request; larger ones go in chunks (regclient's `blobMax`).
    pub blob_max: Option<u64>,
}

/// What a registry takes, as known when a blob starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Known {
    /// The largest request body it takes.
    max_request: Option<u64>,
    /// The smallest part (other than the last) it takes.
    min_chunk: Option<u64>,
}

/// Limits publicly reported for well-known hosts.
fn known(host: &str) -> Known {
    let host = host.split(':').next().unwrap_or(host);
    if host == "ghcr.io" {
        return Known {
            max_request: Some(4 * MIB),
            min_chunk: None,
        };
    }
    // <account>.dkr.ecr.<region>.amazonaws.com (and .com.cn)
    if host.contains(".dkr.ecr.") && (host.ends_with(".amazonaws.com") || host.ends_with(".cn")) {
        return Known {
            max_request: None,
            min_chunk: Some(5 * MIB),
        };
    }
    Known::default()
}

/// How one blob goes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadPlan {
    /// The whole blob in the request that closes the upload.
    Whole,
    /// In chunks of this many bytes (the last may be shorter), then an empty closing `PUT`.
    Chunked {
        /// Bytes per chunk.
        chunk: u64,
    },
}

/// What this process learned of one registry.
#[derive(Debug, Clone, Copy, Default)]
struct Learned {
    max_request: Option<u64>,
    stuck_range: bool,
    refuses_sparse_index: bool,
}

/// Lessons kept for a slow listener before the oldest are dropped.
const LESSONS_KEPT: usize = 64;

/// The upload limits of every registry a process talks to.
#[derive(Debug)]
pub struct UploadLimits {
    settings: HashMap<String, UploadSettings>,
    learned: Mutex<HashMap<String, Learned>>,
    lessons: broadcast::Sender<Lesson>,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self::new(HashMap::new())
    }
}

impl UploadLimits {
    /// Limits with the user's settings per registry host.
    pub fn new(settings: HashMap<String, UploadSettings>) -> Self {
        Self {
            settings,
            learned: Mutex::default(),
            lessons: broadcast::channel(LESSONS_KEPT).0,
        }
    }

    /// What registries teach this process from now on (not what others taught it: see
    /// [`adopt`](Self::adopt)).
    pub fn lessons(&self) -> broadcast::Receiver<Lesson> {
        self.lessons.subscribe()
    }

    /// Takes what another process learned of a registry: its request limit when lower than
    /// the one known here (never below [`MIN_REQUEST_LIMIT`]), its stuck `Range`. Nothing
    /// is offered again as a lesson of this process.
    pub fn adopt(&self, lesson: &Lesson) {
        let Ok(mut learned) = self.learned.lock() else {
            return;
        };
        let entry = learned.entry(lesson.registry.clone()).or_default();
        if let Some(limit) = lesson.max_request.map(|l| l.max(MIN_REQUEST_LIMIT)) {
            if entry.max_request.is_none_or(|known| limit < known) {
                entry.max_request = Some(limit);
                tracing::info!(
                    registry = %lesson.registry,
                    limit,
                    "the fleet says the registry takes at most {} MiB a request",
                    limit as f64 / MIB as f64
                );
            }
        }
        entry.stuck_range |= lesson.stuck_range;
        if lesson.refuses_sparse_index && !entry.refuses_sparse_index {
            entry.refuses_sparse_index = true;
            tracing::info!(
                registry = %lesson.registry,
                "the fleet says the registry refuses sparse indexes; its indexes are rewritten for their platforms"
            );
        }
    }

    fn teach(&self, registry: &str, learned: Learned) {
        // Nobody listening is not an error: a process outside a fleet keeps its lessons.
        let _ = self.lessons.send(Lesson {
            registry: registry.to_owned(),
            max_request: learned.max_request,
            stuck_range: learned.stuck_range,
            refuses_sparse_index: learned.refuses_sparse_index,
        });
    }

    fn learned(&self, registry: &str) -> Learned {
        self.learned
            .lock()
            .map(|l| l.get(registry).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The largest request body `registry` is known to take: what it taught this process,
    /// else, unless the user set its sizes, what is publicly known of it.
    pub fn max_request(&self, registry: &str) -> Option<u64> {
        let set = self.settings.contains_key(registry);
        self.learned(registry)
            .max_request
            .or_else(|| (!set).then(|| known(registry).max_request).flatten())
    }

    /// How a blob of `size` bytes goes up to `registry`: within what is known, set and
    /// learned of it, else [`DEFAULT_BLOB_MAX`] and [`DEFAULT_CHUNK`]; `advertised_min` is
    /// the `OCI-Chunk-Min-Length` of the session.
    pub fn plan(&self, registry: &str, size: u64, advertised_min: Option<u64>) -> UploadPlan {
        let set = self.settings.get(registry).copied().unwrap_or_default();
        let cap = self.max_request(registry).unwrap_or(u64::MAX);
        let blob_max = set.blob_max.unwrap_or(DEFAULT_BLOB_MAX).min(cap);
        if size <= blob_max {
            return UploadPlan::Whole;
        }
        let known_min = if self.settings.contains_key(registry) {
            None
        } else {
            known(registry).min_chunk
        };
        let min = known_min.max(advertised_min).unwrap_or(1).max(1);
        let chunk = set.chunk.unwrap_or(DEFAULT_CHUNK).max(min);
        UploadPlan::Chunked {
            chunk: chunk.min(cap).max(1),
        }
    }

    /// `registry` refused a body of `sent` bytes as too large, saying its limit when
    /// `said` holds it. Lowers what it is sent from now on, never below
    /// [`MIN_REQUEST_LIMIT`]: the new limit, or `None` when it cannot go lower.
    pub fn refused(&self, registry: &str, sent: u64, said: Option<u64>) -> Option<u64> {
        let current = self.max_request(registry).unwrap_or(u64::MAX).min(sent);
        let lower = said
            .filter(|s| *s < current)
            .unwrap_or(current / 2)
            .max(MIN_REQUEST_LIMIT);
        if lower >= current {
            return None;
        }
        let now = self.learned.lock().ok().map(|mut learned| {
            let entry = learned.entry(registry.to_owned()).or_default();
            entry.max_request = Some(lower);
            *entry
        });
        if let Some(now) = now {
            self.teach(registry, now);
        }
        tracing::info!(
            registry,
            limit = lower,
            "the registry refused a {sent}-byte request as too large; sending at most {} MiB a request from now on",
            lower as f64 / MIB as f64
        );
        Some(lower)
    }

    /// `registry` reported a `Range` that did not advance after a chunk it accepted.
    pub fn stuck_range(&self, registry: &str) {
        let newly = self.learned.lock().ok().and_then(|mut learned| {
            let entry = learned.entry(registry.to_owned()).or_default();
            let newly = !entry.stuck_range;
            entry.stuck_range = true;
            newly.then_some(*entry)
        });
        if let Some(now) = newly {
            tracing::info!(
                registry,
                "the registry's upload Range does not advance; counting the bytes sent instead"
            );
            self.teach(registry, now);
        }
    }

    /// Whether `registry` is known to report a `Range` that does not advance.
    pub fn range_is_stuck(&self, registry: &str) -> bool {
        self.learned(registry).stuck_range
    }

    /// `registry` refused an index whose manifests it did not all hold (a sparse index):
    /// from now on it is sent a rewritten index at once, and the fleet is told.
    pub fn sparse_index_refused(&self, registry: &str) {
        let newly = self.learned.lock().ok().and_then(|mut learned| {
            let entry = learned.entry(registry.to_owned()).or_default();
            let newly = !entry.refuses_sparse_index;
            entry.refuses_sparse_index = true;
            newly.then_some(*entry)
        });
        if let Some(now) = newly {
            tracing::info!(
                registry,
                "the registry refuses an index whose platforms it does not all hold; its indexes are rewritten from now on"
            );
            self.teach(registry, now);
        }
    }

    /// Whether `registry` is known to refuse a sparse index.
    pub fn refuses_sparse_index(&self, registry: &str) -> bool {
        self.learned(registry).refuses_sparse_index
    }
}

/// A size set for one registry host, written `HOST=SIZE` (`ghcr.io=4MiB`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSize {
    /// The registry host, with its port when not the default.
    pub host: String,
    /// Bytes.
    pub size: u64,
}

impl std::str::FromStr for HostSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (host, size) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: expected HOST=SIZE, such as ghcr.io=4MiB"))?;
        let host = host.trim();
        if host.is_empty() || host.contains('/') {
            return Err(format!("{text:?}: {host:?} is not a registry host"));
        }
        Ok(Self {
            host: host.to_owned(),
            size: parse_size(size)?,
        })
    }
}

/// The settings per host of `--blob-chunk` and `--blob-max` values.
pub fn settings_of(chunk: &[HostSize], blob_max: &[HostSize]) -> HashMap<String, UploadSettings> {
    let mut settings: HashMap<String, UploadSettings> = HashMap::new();
    for c in chunk {
        settings.entry(c.host.clone()).or_default().chunk = Some(c.size);
    }
    for m in blob_max {
        settings.entry(m.host.clone()).or_default().blob_max = Some(m.size);
    }
    settings
}

/// A size as people write it: `4194304`, `4MiB`, `4M`, `512KiB`, `5MB` (powers of 1024 for
/// `Ki`/`Mi`/`Gi` and the bare `K`/`M`/`G`, of 1000 for `KB`/`MB`/`GB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (say 4MiB, 512KiB or 4194304)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1024,
        "m" | "mib" => MIB,
        "g" | "gib" => 1024 * MIB,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (say KiB, MiB or GiB)"
            ))
        }
    };
    let bytes = number * scale as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{text:?} is not a size of at least one byte"));
    }
    Ok(bytes as u64)
}

/// The limit a refusal's text states, as GHCR's does: "… exceeds the maximum permissible
/// limit of 4.00MiB".
pub fn limit_in_message(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("limit of ")? + "limit of ".len();
    let rest = &message[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .unwrap_or(rest.len());
    parse_size(&rest[..end]).ok()
}

/// Whether a refusal's text says the request body was too large.
pub fn says_too_large(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "too large",
        "exceeds the maximum",
        "entity too large",
        "too big",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_people_write_them() {
        assert_eq!(parse_size("4194304"), Ok(4 * MIB));
        assert_eq!(parse_size("4MiB"), Ok(4 * MIB));
        assert_eq!(parse_size("4.00MiB"), Ok(4 * MIB));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert!(parse_size("4 lots").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn host_sizes_parse_and_gather_per_host() {
        let chunk: HostSize = "ghcr.io=4MiB".parse().unwrap();
        let max: HostSize = "ghcr.io = 2MiB".parse().unwrap();
        assert!("ghcr.io".parse::<HostSize>().is_err());
        assert!("ghcr.io/org=4MiB".parse::<HostSize>().is_err());
        assert!("ghcr.io=four".parse::<HostSize>().is_err());
        let settings = settings_of(&[chunk], &[max]);
        assert_eq!(
            settings["ghcr.io"],
            UploadSettings {
                chunk: Some(4 * MIB),
                blob_max: Some(2 * MIB)
            }
        );
    }

    #[test]
    fn ghcr_states_its_limit() {
        let text = "REQUESTED_RANGE_NOT_SATISFIABLE the request body is too large and exceeds the maximum permissible limit of 4.00MiB";
        assert!(says_too_large(text));
        assert_eq!(limit_in_message(text), Some(4 * MIB));
        assert!(!says_too_large(
            "BLOB_UPLOAD_INVALID upload resumed at wrong offset"
        ));
    }

    #[test]
    fn known_hosts_start_with_their_limits() {
        let limits = UploadLimits::default();
        assert_eq!(
            limits.plan("ghcr.io", 40 * MIB, None),
            UploadPlan::Chunked { chunk: 4 * MIB }
        );
        assert_eq!(limits.plan("ghcr.io", 4 * MIB, None), UploadPlan::Whole);
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(known(ecr).min_chunk, Some(5 * MIB));
        assert_eq!(
            limits.plan(ecr, 40 * MIB, None),
            UploadPlan::Chunked { chunk: 16 * MIB }
        );
        assert_eq!(
            limits.plan("registry.example", 40 * MIB, None),
            UploadPlan::Chunked { chunk: 16 * MIB }
        );
    }

    #[test]
    fn settings_override_defaults_and_a_refusal_lowers_them() {
        let mut settings = HashMap::new();
        settings.insert(
            "r.example".to_owned(),
            UploadSettings {
                chunk: Some(8 * MIB),
                blob_max: Some(2 * MIB),
            },
        );
        let limits = UploadLimits::new(settings);
        assert_eq!(
            limits.plan("r.example", 3 * MIB, None),
            UploadPlan::Chunked { chunk: 8 * MIB }
        );
        // The user's sizes win over what is known of a host.
        let mut ghcr = HashMap::new();
        ghcr.insert(
            "ghcr.io".to_owned(),
            UploadSettings {
                chunk: Some(8 * MIB),
                blob_max: Some(8 * MIB),
            },
        );
        let set = UploadLimits::new(ghcr);
        assert_eq!(
            set.plan("ghcr.io", 40 * MIB, None),
            UploadPlan::Chunked { chunk: 8 * MIB }
        );
        // A refusal without a stated limit halves what was sent.
        assert_eq!(limits.refused("r.example", 8 * MIB, None), Some(4 * MIB));
        assert_eq!(
            limits.plan("r.example", 40 * MIB, None),
            UploadPlan::Chunked { chunk: 4 * MIB }
        );
        // A stated limit is taken at its word; never below 1 MiB, and never raised.
        assert_eq!(limits.refused("r.example", 4 * MIB, Some(1024)), Some(MIB));
        assert_eq!(limits.refused("r.example", MIB, None), None);
        assert_eq!(limits.refused("r.example", 16 * MIB, Some(8 * MIB)), None);
        // Another registry learned nothing.
        assert_eq!(limits.max_request("other.example"), None);
    }

    #[test]
    fn lessons_are_offered_once_and_adopted_elsewhere() {
        let first = UploadLimits::default();
        let mut heard = first.lessons();
        first.refused("r.example", 16 * MIB, Some(4 * MIB));
        first.stuck_range("r.example");
        first.stuck_range("r.example");
        let lesson = heard.try_recv().unwrap();
        assert_eq!(lesson.max_request, Some(4 * MIB));
        assert!(!lesson.stuck_range);
        let second_lesson = heard.try_recv().unwrap();
        assert!(second_lesson.stuck_range);
        assert!(heard.try_recv().is_err(), "a stuck Range is taught once");

        let other = UploadLimits::default();
        let mut others_lessons = other.lessons();
        other.adopt(&second_lesson);
        assert_eq!(other.max_request("r.example"), Some(4 * MIB));
        assert!(other.range_is_stuck("r.example"));
        assert!(
            others_lessons.try_recv().is_err(),
            "an adopted lesson is not taught again"
        );
        // A higher limit heard later does not raise it; nothing goes below the floor.
        other.adopt(&Lesson {
            registry: "r.example".into(),
            max_request: Some(8 * MIB),
            stuck_range: false,
            refuses_sparse_index: false,
        });
        assert_eq!(other.max_request("r.example"), Some(4 * MIB));
        other.adopt(&Lesson {
            registry: "r.example".into(),
            max_request: Some(1),
            stuck_range: false,
            refuses_sparse_index: false,
        });
        assert_eq!(other.max_request("r.example"), Some(MIN_REQUEST_LIMIT));
        assert!(other.range_is_stuck("r.example"));
    }

    #[test]
    fn a_sparse_index_refusal_is_taught_once_and_adopted_elsewhere() {
        let first = UploadLimits::default();
        let mut heard = first.lessons();
        assert!(!first.refuses_sparse_index("r.example"));
        first.sparse_index_refused("r.example");
        first.sparse_index_refused("r.example");
        assert!(first.refuses_sparse_index("r.example"));
        let lesson = heard.try_recv().unwrap();
        assert!(lesson.refuses_sparse_index);
        assert!(heard.try_recv().is_err(), "taught once");
        let other = UploadLimits::default();
        other.adopt(&lesson);
        assert!(other.refuses_sparse_index("r.example"));
        assert!(!other.refuses_sparse_index("elsewhere.example"));
    }

    #[test]
    fn an_advertised_minimum_raises_the_chunk_but_not_past_the_cap() {
        let limits = UploadLimits::default();
        assert_eq!(
            limits.plan("r.example", 100 * MIB, Some(32 * MIB)),
            UploadPlan::Chunked { chunk: 32 * MIB }
        );
        assert_eq!(
            limits.plan("ghcr.io", 100 * MIB, Some(32 * MIB)),
            UploadPlan::Chunked { chunk: 4 * MIB }
        );
    }

    #[test]
    fn a_stuck_range_is_remembered_per_registry() {
        let limits = UploadLimits::default();
        limits.stuck_range("ecr.example");
        assert!(limits.range_is_stuck("ecr.example"));
        assert!(!limits.range_is_stuck("other.example"));
    }
}
