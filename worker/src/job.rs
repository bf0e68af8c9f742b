//! What a worker works with: the jobs' copier ([`Mirror`]: the copy engine, or a stand-in in
//! tests), how it runs ([`WorkerOptions`], [`Deferral`]), and what became of a delivery
//! ([`Handled`]). The loop (`job_runner.rs`) and the settling of each delivery
//! (`job_outcome.rs`) both speak of these; neither imports the other's types.

use std::future::Future;
use std::time::Duration;

use image_mirror_common::{MirrorJob, Outcome};

use crate::copy::{AttachOptions, CopyAsks, CopyEngine, TargetOutcome};

/// What a worker does with a job: the copy engine, or a stand-in in tests.
pub trait Mirror: Clone + Send + Sync + 'static {
    /// Copies the job's source to each of its targets: one outcome per target, each naming
    /// its target.
    fn mirror(&self, job: &MirrorJob) -> impl Future<Output = Vec<TargetOutcome>> + Send;

    /// Tells the copies under way to stop at their next checkpoint.
    fn stop_copies(&self) {}
}

impl Mirror for CopyEngine {
    fn mirror(&self, job: &MirrorJob) -> impl Future<Output = Vec<TargetOutcome>> + Send {
        let source = job.source_ref();
        let targets: Vec<_> = job
            .targets()
            .into_iter()
            .map(|t| t.at_tag(job.tag.clone()))
            .collect();
        let asked = CopyAsks {
            attach: AttachOptions {
                referrers: job.referrers,
                artifact_types: Vec::new(),
                digest_tags: job.digest_tags,
            },
            platforms: job.platforms.clone(),
            list_revision: job.list_revision.clone(),
        };
        let engine = self.clone();
        // Boxed: the copy's future is deep, and the worker loop's holds many of them.
        async move { Box::pin(engine.copy_many_with(&source, &targets, &asked)).await }
    }

    fn stop_copies(&self) {
        CopyEngine::stop_copies(self);
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Jobs in progress at once (also the prefetch).
    pub concurrency: u16,
    /// After a stop signal, how long jobs in progress may take to end; then their copies
    /// are told to stop at their next checkpoint, and the jobs are given back.
    pub grace: Duration,
    /// Whether a job whose registry cannot be reached at all is tried again later (a fleet
    /// worker: the network may come back) or fails at once (a one-off run).
    pub retry_unreachable: bool,
    /// What becomes of a job whose registry's rate limit is spent for longer than the
    /// client waits.
    pub deferral: Deferral,
    /// Told of each job sent to the dead-letter queue (`--notify`), in the background.
    pub notifier: Option<std::sync::Arc<image_mirror_notify::Notifier>>,
}

/// What a worker does with a job deferred by a spent rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Keeps it in a delay queue timed to when the quota is expected back (a fleet worker).
    DelayQueue,
    /// Ends it with a `deferred` event, naming the limit (a one-off run).
    Report,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            grace: Duration::from_secs(30),
            retry_unreachable: true,
            deferral: Deferral::DelayQueue,
            notifier: None,
        }
    }
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done: an event with this outcome was published and the delivery acknowledged.
    Finished(Outcome),
    /// Scheduled for another attempt.
    Retrying(u32),
    /// Put aside for this long, until a registry's quota is expected back.
    Deferred(Duration),
    /// Given back unacknowledged (the broker was unavailable); it will come again.
    Returned,
}
