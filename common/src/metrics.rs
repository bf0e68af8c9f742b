//! The process's metrics, in the Prometheus text format: counters and gauges with labels, and
//! one histogram, kept in process-wide families that every role updates and the metrics
//! endpoint renders. Names and meanings are listed in [`FAMILIES`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// A counter or gauge family: one value per label set.
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl Family {
    const fn new(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            kind,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds `n` to the value for `labels` (in the family's label order).
    pub fn add(&self, labels: &[&str], n: f64) {
        if let Ok(mut v) = self.values.lock() {
            *v.entry(labels.iter().map(|s| (*s).to_owned()).collect())
                .or_insert(0.0) += n;
        }
    }

    /// Makes the value for `labels` exist (at zero unless it already has one), so that a
    /// counter's first increase is seen as one: Prometheus's `increase()` needs a sample
    /// before it.
    pub fn touch(&self, labels: &[&str]) {
        self.add(labels, 0.0);
    }

    /// Adds one.
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1.0);
    }

    /// Sets the value for `labels` (gauges).
    pub fn set(&self, labels: &[&str], value: f64) {
        if let Ok(mut v) = self.values.lock() {
            v.insert(labels.iter().map(|s| (*s).to_owned()).collect(), value);
        }
    }

    /// The value for `labels`, zero when never set.
    pub fn get(&self, labels: &[&str]) -> f64 {
        let key: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        self.values
            .lock()
            .ok()
            .and_then(|v| v.get(&key).copied())
            .unwrap_or(0.0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        let Ok(values) = self.values.lock() else {
            return;
        };
        if values.is_empty() && self.labels.is_empty() {
            let _ = writeln!(out, "{} 0", self.name);
        }
        for (labels, value) in values.iter() {
            let _ = writeln!(
                out,
                "{}{} {value}",
                self.name,
                label_text(self.labels, labels)
            );
        }
    }
}

fn label_text(names: &[&str], values: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{n}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// A histogram of seconds.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    bounds: &'static [f64],
    state: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str, bounds: &'static [f64]) -> Self {
        Self {
            name,
            help,
            bounds,
            state: Mutex::new((Vec::new(), 0.0, 0)),
        }
    }

    /// Records one observation.
    pub fn observe(&self, seconds: f64) {
        if let Ok(mut s) = self.state.lock() {
            if s.0.len() != self.bounds.len() {
                s.0 = vec![0; self.bounds.len()];
            }
            for (i, b) in self.bounds.iter().enumerate() {
                if seconds <= *b {
                    s.0[i] += 1;
                }
            }
            s.1 += seconds;
            s.2 += 1;
        }
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.state.lock().map(|s| s.2).unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        let Ok(s) = self.state.lock() else {
            return;
        };
        for (i, b) in self.bounds.iter().enumerate() {
            let n = s.0.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{}_bucket{{le=\"{b}\"}} {n}", self.name);
        }
        let _ = writeln!(out, "{}_bucket{{le=\"+Inf\"}} {}", self.name, s.2);
        let _ = writeln!(out, "{}_sum {}", self.name, s.1);
        let _ = writeln!(out, "{}_count {}", self.name, s.2);
    }
}

/// Jobs ended, by outcome (`copied`, `already_present`, `drifted`, `failed`, `deferred`).
pub static JOBS: Family = Family::new(
    "image_mirror_jobs_total",
    "Jobs ended, by outcome.",
    "counter",
    &["outcome"],
);
/// Blob bytes sent to target registries.
pub static BYTES_COPIED: Family = Family::new(
    "image_mirror_bytes_copied_total",
    "Blob bytes sent to target registries.",
    "counter",
    &[],
);
/// Blobs by what happened to them (`copied`, `mounted`, `skipped`).
pub static BLOBS: Family = Family::new(
    "image_mirror_blobs_total",
    "Blobs handled, by action: copied, mounted or skipped.",
    "counter",
    &["action"],
);
/// Registry requests retried, by error class (`http_429`, `http_503`, `network`, ...).
pub static RETRIES: Family = Family::new(
    "image_mirror_retries_total",
    "Registry requests retried, by error class.",
    "counter",
    &["class"],
);
/// 429 answers, by registry host.
pub static TOO_MANY_REQUESTS: Family = Family::new(
    "image_mirror_registry_429_total",
    "429 Too Many Requests answers, by registry.",
    "counter",
    &["registry"],
);
/// Manifest GETs sent, by registry (pulls, as Docker Hub counts them).
pub static PULLS: Family = Family::new(
    "image_mirror_registry_pulls_total",
    "Manifest GETs sent (pulls, as Docker Hub counts them), by registry.",
    "counter",
    &["registry"],
);
/// Manifest HEADs sent, by registry (free where GETs are counted).
pub static MANIFEST_HEADS: Family = Family::new(
    "image_mirror_registry_manifest_heads_total",
    "Manifest HEADs sent (free where GETs count as pulls), by registry.",
    "counter",
    &["registry"],
);
/// The pull quota a registry said was left, at its last answer that said.
pub static QUOTA_REMAINING: Family = Family::new(
    "image_mirror_registry_quota_remaining",
    "Pulls left in the registry's quota, as its last answer said (ratelimit-remaining).",
    "gauge",
    &["registry"],
);
/// The pull quota a registry says it grants per window (ratelimit-limit).
pub static QUOTA_LIMIT: Family = Family::new(
    "image_mirror_registry_quota_limit",
    "Pulls the registry's quota grants per window, as its last answer said (ratelimit-limit).",
    "gauge",
    &["registry"],
);
/// The pulls this process leaves unspent in a registry's quota.
pub static QUOTA_RESERVE: Family = Family::new(
    "image_mirror_registry_quota_reserve",
    "Pulls left unspent in the registry's quota: at this many, pulls wait or jobs are deferred.",
    "gauge",
    &["registry"],
);
/// Times a registry's requests were paused for its rate limit.
pub static PAUSES: Family = Family::new(
    "image_mirror_registry_pauses_total",
    "Times requests to a registry were paused for its rate limit.",
    "counter",
    &["registry"],
);
/// Jobs deferred because a registry's quota was spent beyond the longest wait.
pub static DEFERRED: Family = Family::new(
    "image_mirror_jobs_deferred_total",
    "Jobs deferred to a delay queue because a registry's rate limit was spent, by registry.",
    "counter",
    &["registry"],
);
/// Times a worker waited for another worker's upload of a blob (fleet mode).
pub static LEASE_WAITS: Family = Family::new(
    "image_mirror_fleet_lease_waits_total",
    "Times a worker waited for another worker sending the same blob to the same registry.",
    "counter",
    &[],
);
/// Uploads taken over from where another worker left them (fleet mode).
pub static UPLOAD_TAKEOVERS: Family = Family::new(
    "image_mirror_fleet_upload_takeovers_total",
    "Uploads resumed from the checkpoint another (stopped) worker left, instead of from byte zero.",
    "counter",
    &[],
);
/// What travelled with images: `referrer` or `digest_tag`.
pub static ATTACHED: Family = Family::new(
    "image_mirror_attached_total",
    "Referrers (signatures, attestations, SBOMs) and cosign digest tags copied with images, by kind.",
    "counter",
    &["kind"],
);
/// Signature checks of `--require-signature` and `--require-identity`: `verified` (by a key),
/// `identity` (a keyless identity) or `unsigned`.
pub static SIGNATURES: Family = Family::new(
    "image_mirror_signatures_total",
    "Images whose cosign signature a trusted key (verified) or keyless identity (identity) verified, or that were refused as unsigned.",
    "counter",
    &["result"],
);
/// Jobs being worked on now.
pub static JOBS_IN_FLIGHT: Family = Family::new(
    "image_mirror_jobs_in_flight",
    "Jobs being worked on now.",
    "gauge",
    &[],
);
/// Ready messages per queue, as last read from the broker.
pub static QUEUE_READY: Family = Family::new(
    "image_mirror_queue_ready_messages",
    "Messages waiting per queue, as last read from the broker (queue lag).",
    "gauge",
    &["queue"],
);
/// Queue consumers per queue, as last read from the broker.
pub static QUEUE_CONSUMERS: Family = Family::new(
    "image_mirror_queue_consumers",
    "Consumers per queue, as last read from the broker (0 on the jobs queue: no worker).",
    "gauge",
    &["queue"],
);
/// Whether this process is ready (its broker connection is up).
pub static READY: Family = Family::new(
    "image_mirror_ready",
    "1 when this process is ready (its broker connection is up), 0 when not.",
    "gauge",
    &[],
);
/// Committer batches, by result (`recorded`: written or proposed, `failed`: back to the
/// queue).
pub static COMMITTER_BATCHES: Family = Family::new(
    "image_mirror_committer_batches_total",
    "Committer batches, by result: recorded (written or proposed) or failed (events back to the queue).",
    "counter",
    &["result"],
);
/// Lines recorded by the committer (written locally or proposed).
pub static LINES_RECORDED: Family = Family::new(
    "image_mirror_lines_recorded_total",
    "images-list lines recorded by the committer, by destination: local or pull_request.",
    "counter",
    &["destination"],
);
/// Notifications sent (`--notify`), by outcome: delivered, or failed (every attempt).
pub static NOTIFICATIONS: Family = Family::new(
    "image_mirror_notifications_total",
    "Notifications (--notify), by outcome: delivered, or failed after every attempt.",
    "counter",
    &["outcome"],
);
/// Blob bytes moved through the bandwidth budget, by registry (`all`: every one).
pub static TRANSFER_BYTES: Family = Family::new(
    "image_mirror_transfer_bytes_total",
    "Blob bytes read from or written to registries, by registry (all: every one).",
    "counter",
    &["registry"],
);
/// The bandwidth cap (`--max-bandwidth`), by registry (`all`: the process's; 0: none).
pub static BANDWIDTH_CAP: Family = Family::new(
    "image_mirror_bandwidth_cap_bytes_per_second",
    "The bandwidth cap in bytes per second, by registry (all: every transfer's; 0 when none). A fleet's cap is the fleet's.",
    "gauge",
    &["registry"],
);
/// Time transfers waited for bandwidth budget.
pub static BANDWIDTH_WAIT: Family = Family::new(
    "image_mirror_bandwidth_wait_seconds_total",
    "Time transfers waited for bandwidth budget (--max-bandwidth), by registry (all: every one).",
    "counter",
    &["registry"],
);
/// Attestations (`--attest`), by result: pushed, or present already.
pub static ATTESTATIONS: Family = Family::new(
    "image_mirror_attestations_total",
    "Statements of copies (--attest), by result: pushed, or present (one was there already).",
    "counter",
    &["result"],
);
/// Policy hook decisions (`--policy-hook`).
pub static POLICY_DECISIONS: Family = Family::new(
    "image_mirror_policy_decisions_total",
    "Decisions of the policy hook (--policy-hook), by decision: allow, deny, defer (a hook that failed counts as its --policy-hook-fail decision).",
    "counter",
    &["decision"],
);
/// Job duration.
pub static JOB_DURATION: Histogram = Histogram::new(
    "image_mirror_job_duration_seconds",
    "Time from taking a job to its event, in seconds.",
    &[
        0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
    ],
);

/// Every counter and gauge family, in the order they are rendered.
pub static FAMILIES: [&Family; 28] = [
    &JOBS,
    &BYTES_COPIED,
    &BLOBS,
    &RETRIES,
    &TOO_MANY_REQUESTS,
    &PULLS,
    &MANIFEST_HEADS,
    &QUOTA_REMAINING,
    &QUOTA_LIMIT,
    &QUOTA_RESERVE,
    &PAUSES,
    &DEFERRED,
    &LEASE_WAITS,
    &UPLOAD_TAKEOVERS,
    &ATTACHED,
    &SIGNATURES,
    &JOBS_IN_FLIGHT,
    &QUEUE_READY,
    &QUEUE_CONSUMERS,
    &READY,
    &COMMITTER_BATCHES,
    &LINES_RECORDED,
    &NOTIFICATIONS,
    &TRANSFER_BYTES,
    &BANDWIDTH_CAP,
    &BANDWIDTH_WAIT,
    &POLICY_DECISIONS,
    &ATTESTATIONS,
];

/// Counts what travelled with the job's image and its signature check.
pub fn count_attachments(event: &crate::JobEvent) {
    if event.referrers_copied > 0 {
        ATTACHED.add(&["referrer"], event.referrers_copied as f64);
    }
    if event.digest_tags_copied > 0 {
        ATTACHED.add(&["digest_tag"], event.digest_tags_copied as f64);
    }
    if event.signed_by.is_some() {
        SIGNATURES.inc(&[if event.identity_verified {
            "identity"
        } else {
            "verified"
        }]);
    }
    if event.error.as_ref().is_some_and(|e| e.class == "unsigned") {
        SIGNATURES.inc(&["unsigned"]);
    }
}

/// Makes a registry's counters exist at zero from the first request to it on.
pub fn touch_registry(registry: &str) {
    for f in [
        &TOO_MANY_REQUESTS,
        &PULLS,
        &MANIFEST_HEADS,
        &PAUSES,
        &DEFERRED,
    ] {
        f.touch(&[registry]);
    }
}

/// Makes a worker's counters exist at zero from the start.
pub fn touch_worker() {
    for outcome in ["copied", "already_present", "drifted", "failed", "deferred"] {
        JOBS.touch(&[outcome]);
    }
    for action in ["copied", "mounted", "skipped"] {
        BLOBS.touch(&[action]);
    }
    for kind in ["referrer", "digest_tag"] {
        ATTACHED.touch(&[kind]);
    }
    for result in ["verified", "identity", "unsigned"] {
        SIGNATURES.touch(&[result]);
    }
    touch_notifications();
    TRANSFER_BYTES.touch(&["all"]);
    BANDWIDTH_WAIT.touch(&["all"]);
    BANDWIDTH_CAP.touch(&["all"]);
    for decision in ["allow", "deny", "defer"] {
        POLICY_DECISIONS.touch(&[decision]);
    }
    for result in ["pushed", "present"] {
        ATTESTATIONS.touch(&[result]);
    }
}

/// The notification counters, at zero until a notice is sent.
pub fn touch_notifications() {
    for outcome in ["delivered", "failed"] {
        NOTIFICATIONS.touch(&[outcome]);
    }
}

/// Makes the committer's counters exist at zero from the start.
pub fn touch_committer() {
    for result in ["recorded", "failed"] {
        COMMITTER_BATCHES.touch(&[result]);
    }
    for destination in ["local", "pull_request"] {
        LINES_RECORDED.touch(&[destination]);
    }
    touch_notifications();
}

/// Everything, in the Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    for f in FAMILIES {
        f.render(&mut out);
    }
    JOB_DURATION.render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_makes_a_series_exist_at_zero_and_keeps_a_value() {
        static F: Family = Family::new("touched_total", "Help.", "counter", &["a"]);
        F.touch(&["x"]);
        F.inc(&["y"]);
        F.touch(&["y"]);
        let mut out = String::new();
        F.render(&mut out);
        assert!(out.contains("touched_total{a=\"x\"} 0\n"), "{out}");
        assert!(out.contains("touched_total{a=\"y\"} 1\n"), "{out}");
    }

    #[test]
    fn renders_the_text_format() {
        static F: Family = Family::new("t_total", "Help.", "counter", &["a"]);
        F.inc(&["x\"y"]);
        F.add(&["z"], 2.0);
        static H: Histogram = Histogram::new("t_seconds", "Help.", &[1.0, 5.0]);
        H.observe(0.5);
        H.observe(3.0);
        let mut out = String::new();
        F.render(&mut out);
        H.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_total Help.\n# TYPE t_total counter\nt_total{a=\"x\\\"y\"} 1\nt_total{a=\"z\"} 2\n\
             # HELP t_seconds Help.\n# TYPE t_seconds histogram\nt_seconds_bucket{le=\"1\"} 1\n\
             t_seconds_bucket{le=\"5\"} 2\nt_seconds_bucket{le=\"+Inf\"} 2\nt_seconds_sum 3.5\nt_seconds_count 2\n"
        );
    }
}
