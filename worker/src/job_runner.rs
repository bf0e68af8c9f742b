//! The worker loop: takes jobs from the queue, copies, publishes the job's event (confirmed),
//! and only then acknowledges. Transient failures go to a delay queue with the next attempt
//! number; permanent ones, and the last attempt, go to the dead-letter queue with their reason
//! and a `failed` event. Every step is idempotent: a job delivered twice copies nothing the
//! second time and publishes the same event again.
//!
//! What becomes of each delivery once its copy has run lives in [`job_outcome`]
//! (crate::job_outcome): every way out there is bounded and logged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use image_mirror_common::{metrics, MirrorJob, Outcome};
use image_mirror_queue::trace_context;
use image_mirror_queue::{Broker, Delivery, QueueError};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::copy::{AttachOptions, CopyEngine, CopyError, CopyReport};
use crate::job_outcome::{dead_letter, JobRun};

/// What a worker does with a job: the copy engine, or a stand-in in tests.
pub trait Mirror: Clone + Send + Sync + 'static {
    /// Copies the job's source to each of its targets: one result per target, in the order
    /// of [`MirrorJob::targets`].
    fn mirror(
        &self,
        job: &MirrorJob,
    ) -> impl Future<Output = Vec<Result<CopyReport, CopyError>>> + Send;
}

impl Mirror for CopyEngine {
    fn mirror(
        &self,
        job: &MirrorJob,
    ) -> impl Future<Output = Vec<Result<CopyReport, CopyError>>> + Send {
        let source = job.source_ref();
        let targets: Vec<_> = job
            .targets()
            .into_iter()
            .map(|t| t.at_tag(job.tag.clone()))
            .collect();
        let asked = AttachOptions {
            referrers: job.referrers,
            artifact_types: Vec::new(),
            digest_tags: job.digest_tags,
        };
        let engine = self.clone();
        async move { engine.copy_many_with(&source, &targets, &asked).await }
    }
}

/// How a worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Jobs in progress at once (also the prefetch).
    pub concurrency: u16,
    /// After a stop signal, how long jobs in progress may take before they are left for
    /// redelivery.
    pub grace: Duration,
    /// Whether a job whose registry cannot be reached at all is tried again later (a fleet
    /// worker: the network may come back) or fails at once (a one-off run).
    pub retry_unreachable: bool,
    /// What becomes of a job whose registry's rate limit is spent for longer than the
    /// client waits.
    pub deferral: Deferral,
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

/// Runs jobs from `broker` until `stop` completes, then lets jobs in progress finish within
/// the grace period. Returns how many deliveries were handled.
pub async fn run_worker<M: Mirror>(
    broker: Arc<Broker>,
    mirror: M,
    options: WorkerOptions,
    stop: impl Future<Output = ()>,
) -> Result<u64, QueueError> {
    metrics::touch_worker();
    let jobs = broker.topology().jobs();
    let mut consumer = broker.consume(&jobs, options.concurrency).await?;
    let mut running = JoinSet::new();
    let mut handled = 0_u64;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                handled += count(done);
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let (broker, mirror) = (Arc::clone(&broker), mirror.clone());
                    running.spawn(async move { handle(&broker, &mirror, options, delivery).await });
                }
                Some(Err(e)) => return Err(e),
                None => break,
            },
        }
    }
    tracing::info!(in_progress = running.len(), "stopping: no new jobs taken");
    let drain = async {
        while let Some(done) = running.join_next().await {
            handled += count(done);
        }
    };
    if tokio::time::timeout(options.grace, drain).await.is_err() {
        tracing::warn!(
            left = running.len(),
            "grace period over; unfinished jobs will be delivered again"
        );
        running.abort_all();
    }
    Ok(handled)
}

/// 1 for a delivery handled; a task that died is logged (its delivery comes again when the
/// broker sees it unacknowledged).
fn count(done: Result<Handled, tokio::task::JoinError>) -> u64 {
    match done {
        Ok(_) => 1,
        Err(e) if e.is_cancelled() => 0,
        Err(e) => {
            tracing::error!(error = %e, "a job's task died; its delivery will come again");
            0
        }
    }
}

/// Handles one delivery to the end: event published and acknowledged, retry scheduled, or
/// given back.
pub async fn handle<M: Mirror>(
    broker: &Broker,
    mirror: &M,
    options: WorkerOptions,
    delivery: Delivery,
) -> Handled {
    let attempt = delivery.attempt();
    let job = match MirrorJob::from_json(&delivery.body) {
        Ok(job) => job,
        Err(e) => {
            // Nothing can make this message readable: keep it for people to look at.
            let reason = format!("malformed: {e}");
            tracing::error!(id = %delivery.id, %reason, "dead-lettering an unreadable job");
            let message = delivery.to_message();
            return dead_letter(broker, delivery, &message, &reason).await;
        }
    };
    let span = tracing::info_span!(
        "worker.job",
        job.id = %job.id,
        job.source = %job.source_ref(),
        job.target = %job.target_ref(),
        job.origin = %job.origin,
        job.attempt = attempt,
        job.outcome = tracing::field::Empty,
        job.digest = tracing::field::Empty,
        job.bytes_copied = tracing::field::Empty,
    );
    trace_context::adopt(&span, &delivery.headers);
    metrics::JOBS_IN_FLIGHT.add(&[], 1.0);
    let job_run = JobRun {
        broker,
        options,
        job,
        attempt,
        span: span.clone(),
    };
    let handled = job_run.run(mirror, delivery).instrument(span).await;
    metrics::JOBS_IN_FLIGHT.add(&[], -1.0);
    handled
}
