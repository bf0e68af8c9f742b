//! The names and arguments of the RabbitMQ topology, in one place so that every role declares
//! them identically (a mismatch closes the channel with PRECONDITION_FAILED).
//!
//! Every name starts with a prefix (`mirror` by default), so that several mirror systems, or
//! tests, can share one broker.

use crate::job_retries::JobRetries;

/// Header carrying the delivery attempt of a job (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-image-mirror-attempt";
/// Header counting how many times a job was deferred for a registry's rate limit.
pub const DEFERRED_HEADER: &str = "x-image-mirror-deferred";
/// Header carrying why a job was dead-lettered.
pub const REASON_HEADER: &str = "x-image-mirror-reason";

/// The default prefix of every name.
pub const DEFAULT_PREFIX: &str = "mirror";

/// The queue and exchange names under one prefix, and the job retries its delay queues
/// hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    retries: JobRetries,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Topology {
    /// The names under `prefix`, with the default job retries.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            retries: JobRetries::default(),
        }
    }

    /// The same names, with delay queues for `retries`.
    pub fn with_retries(mut self, retries: JobRetries) -> Self {
        self.retries = retries;
        self
    }

    /// The job retries: the delay of each delay queue, and so the attempts a job gets.
    pub fn retries(&self) -> &JobRetries {
        &self.retries
    }

    /// The fanout exchange the fleet shares its bandwidth cap on: `<prefix>.bandwidth`.
    pub fn bandwidth(&self) -> String {
        format!("{}.bandwidth", self.prefix)
    }

    /// Durable quorum queue of jobs: `<prefix>.jobs`.
    pub fn jobs(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// Durable quorum queue of jobs that failed for good: `<prefix>.jobs.dead`.
    pub fn dead(&self) -> String {
        format!("{}.jobs.dead", self.prefix)
    }

    /// Delay queue of retry `n` (1-based): `<prefix>.jobs.retry.<n>`.
    pub fn retry(&self, n: usize) -> String {
        format!("{}.jobs.retry.{n}", self.prefix)
    }

    /// Durable topic exchange of events, routed by `job.<outcome>`: `<prefix>.events`.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The committer's durable queue, bound to the events with `job.*`:
    /// `<prefix>.events.committer`.
    pub fn committer(&self) -> String {
        format!("{}.events.committer", self.prefix)
    }

    /// Durable quorum queue of events the committer could not read, each with its reason:
    /// `<prefix>.events.dead`.
    pub fn events_dead(&self) -> String {
        format!("{}.events.dead", self.prefix)
    }

    /// The stream in which workers say where blobs are: `<prefix>.blob-locations`.
    pub fn blob_locations(&self) -> String {
        format!("{}.blob-locations", self.prefix)
    }

    /// The lease of one blob in one registry (an exclusive queue: one connection holds it at
    /// a time, and the broker frees it when that connection dies):
    /// `<prefix>.lease.<registry hash>.<digest>`.
    pub fn blob_lease(&self, registry: &str, digest: &image_mirror_common::Digest) -> String {
        format!("{}.lease.{}.{digest}", self.prefix, registry_hash(registry))
    }

    /// The last-value queue of one chunked upload's checkpoint:
    /// `<prefix>.checkpoint.<registry hash>.<digest>`.
    pub fn blob_checkpoint(&self, registry: &str, digest: &image_mirror_common::Digest) -> String {
        format!(
            "{}.checkpoint.{}.{digest}",
            self.prefix,
            registry_hash(registry)
        )
    }

    /// Every queue, jobs first.
    pub fn queues(&self) -> Vec<String> {
        let mut v = vec![self.jobs()];
        v.extend((1..=self.retries.delays().len()).map(|n| self.retry(n)));
        v.push(self.dead());
        v.push(self.committer());
        v.push(self.events_dead());
        v
    }

    /// Whether an event with `routing_key` reaches the committer's queue (its binding is
    /// `job.*`: one word after `job.`).
    pub fn committer_binds(routing_key: &str) -> bool {
        routing_key
            .strip_prefix("job.")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('.'))
    }
}

/// A short, name-safe stand-in for a registry host in queue names.
fn registry_hash(registry: &str) -> String {
    let digest = image_mirror_common::Digest::sha256_of(registry.as_bytes());
    digest.encoded().chars().take(16).collect()
}
