//! The worker loop: takes jobs from the queue, copies, publishes the job's event (confirmed),
//! and only then acknowledges. Transient failures go to a delay queue with the next attempt
//! number; permanent ones, and the last attempt, go to the dead-letter queue with their reason
//! and a `failed` event. Every step is idempotent: a job delivered twice copies nothing the
//! second time and publishes the same event again.
//!
//! Every way out is bounded and logged: a copy that panics is logged and its job tried again
//! after a delay; a publish the broker refuses sends the job to a delay queue (or, when that
//! is refused too, to the dead-letter queue) with the broker's reason, and never straight back
//! into the jobs queue; a delivery is given back at once only when the broker connection
//! itself failed.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use image_mirror_common::message::JobFailure;
use image_mirror_common::queue::topology::MAX_ATTEMPTS;
use image_mirror_common::queue::{Broker, Delivery, Message, QueueError};
use image_mirror_common::registry::ErrorClass;
use image_mirror_common::{metrics, trace_context, JobEvent, MirrorJob, Outcome};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::copy::{CopyEngine, CopyError, CopyOutcome, CopyReport};

/// The pause before a delivery is given back after the broker refused what the worker
/// published for it (so that a refusal never turns into a tight loop).
const REFUSED_PAUSE: Duration = Duration::from_secs(5);

/// What a worker does with a job: the copy engine, or a stand-in in tests.
pub trait Mirror: Clone + Send + Sync + 'static {
    /// Copies the job's source to its target.
    fn mirror(&self, job: &MirrorJob)
        -> impl Future<Output = Result<CopyReport, CopyError>> + Send;
}

impl Mirror for CopyEngine {
    fn mirror(
        &self,
        job: &MirrorJob,
    ) -> impl Future<Output = Result<CopyReport, CopyError>> + Send {
        let (source, target) = (job.source_ref(), job.target_ref());
        let engine = self.clone();
        async move { engine.copy(&source, &target).await }
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
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            grace: Duration::from_secs(30),
            retry_unreachable: true,
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
            return dead_letter(
                broker,
                delivery,
                &reason,
                Handled::Finished(Outcome::Failed),
            )
            .await;
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

/// One delivery of one job, from copy to acknowledgement.
struct JobRun<'a> {
    broker: &'a Broker,
    options: WorkerOptions,
    job: MirrorJob,
    attempt: u32,
    span: tracing::Span,
}

/// What the copy came to, as the queue sees it.
enum Verdict {
    Done(JobEvent),
    TryAgain(CopyError),
    Failed(JobEvent, String),
}

impl JobRun<'_> {
    async fn run<M: Mirror>(self, mirror: &M, delivery: Delivery) -> Handled {
        let started = Instant::now();
        let copied = AssertUnwindSafe(mirror.mirror(&self.job))
            .catch_unwind()
            .await;
        let result = match copied {
            Ok(result) => result,
            Err(panic) => {
                let why = panic_text(&panic);
                tracing::error!(job = %self.job.id, attempt = self.attempt, panic = %why, "the copy panicked; the job will be tried again later");
                return self
                    .retry_later(delivery, &format!("panicked: {why}"))
                    .await;
            }
        };
        match self.judge(result, started) {
            Verdict::TryAgain(e) => {
                tracing::debug!(job = %self.job.id, attempt = self.attempt, error = %e, "transient failure; retrying later");
                self.retry_later(delivery, &e.to_string()).await
            }
            Verdict::Failed(event, reason) => {
                match self
                    .broker
                    .publish_dead(&delivery.to_message(), &reason)
                    .await
                {
                    Ok(()) => self.publish_event(event, delivery, false).await,
                    Err(QueueError::Refused(refusal)) => {
                        tracing::error!(job = %self.job.id, %refusal, "the broker refused the dead letter");
                        give_back_later(delivery).await
                    }
                    Err(e) => {
                        tracing::warn!(job = %self.job.id, error = %e, "could not dead-letter the job; it will come again");
                        give_back(delivery).await
                    }
                }
            }
            Verdict::Done(event) => self.publish_event(event, delivery, true).await,
        }
    }

    /// The copy's result as an event, a retry, or a failure with its dead-letter reason.
    fn judge(&self, result: Result<CopyReport, CopyError>, started: Instant) -> Verdict {
        let job = &self.job;
        let mut event = JobEvent::for_job(job, Outcome::Failed);
        event.attempts = self.attempt;
        event.duration_ms = millis(started.elapsed());
        let e = match result {
            Ok(report) => {
                fill(&mut event, &report);
                self.span
                    .record("job.digest", tracing::field::display(&report.digest));
                self.span.record("job.bytes_copied", report.bytes_sent);
                tracing::info!(job = %job.id, source = %job.source_ref(), target = %job.target_ref(), outcome = event.outcome.as_str(), "job done");
                return Verdict::Done(event);
            }
            Err(e) => e,
        };
        let retryable = match e.error_class() {
            ErrorClass::Transient => true,
            ErrorClass::Unreachable => self.options.retry_unreachable,
            ErrorClass::Permanent => false,
        };
        if retryable && self.attempt < MAX_ATTEMPTS {
            return Verdict::TryAgain(e);
        }
        let class = if retryable {
            format!("{}_exhausted", e.class())
        } else {
            e.class()
        };
        tracing::warn!(job = %job.id, source = %job.source_ref(), target = %job.target_ref(), attempt = self.attempt, class, error = %e, "job failed");
        let reason = format!("{class}: {e}");
        event.error = Some(JobFailure {
            class,
            message: e.to_string(),
        });
        Verdict::Failed(event, reason)
    }

    /// Sends the delivery to the next delay queue; when the attempts are spent or the broker
    /// refuses, to the dead-letter queue.
    async fn retry_later(self, delivery: Delivery, why: &str) -> Handled {
        if self.attempt >= MAX_ATTEMPTS {
            let reason = format!("attempts spent; last: {why}");
            return dead_letter(
                self.broker,
                delivery,
                &reason,
                Handled::Finished(Outcome::Failed),
            )
            .await;
        }
        match self
            .broker
            .publish_retry(&delivery.to_message(), self.attempt)
            .await
        {
            Ok(()) => ack(delivery, Handled::Retrying(self.attempt + 1)).await,
            Err(QueueError::Refused(refusal)) => {
                tracing::error!(job = %self.job.id, %refusal, "the broker refused the retry; dead-lettering the job");
                let reason = format!("retry refused by the broker ({refusal}); last: {why}");
                dead_letter(
                    self.broker,
                    delivery,
                    &reason,
                    Handled::Finished(Outcome::Failed),
                )
                .await
            }
            Err(e) => {
                tracing::warn!(job = %self.job.id, error = %e, "could not schedule the retry; the job will come again");
                give_back(delivery).await
            }
        }
    }

    /// Publishes the job's event (confirmed), then acknowledges `delivery`. A refused event
    /// sends a job that succeeded to a delay queue (`retry_when_refused`); a failed job is in
    /// the dead-letter queue already, so it is acknowledged all the same.
    async fn publish_event(
        self,
        event: JobEvent,
        delivery: Delivery,
        retry_when_refused: bool,
    ) -> Handled {
        let publish = tracing::info_span!("worker.publish_event", outcome = event.outcome.as_str());
        let mut message = Message {
            id: self.job.id.clone(),
            body: event.to_json(),
            headers: delivery.headers.clone(),
        };
        trace_context::inject(&publish, &mut message.headers);
        let published = self
            .broker
            .publish_event(&event.routing_key(), &message)
            .instrument(publish)
            .await;
        let finished = || {
            self.span.record("job.outcome", event.outcome.as_str());
            metrics::JOBS.inc(&[event.outcome.as_str()]);
            metrics::BYTES_COPIED.add(&[], event.bytes_copied as f64);
            metrics::JOB_DURATION.observe(event.duration_ms as f64 / 1000.0);
        };
        match published {
            Ok(()) => {
                finished();
                ack(delivery, Handled::Finished(event.outcome)).await
            }
            Err(QueueError::Refused(refusal)) if retry_when_refused => {
                tracing::error!(job = %self.job.id, %refusal, "the broker refused the job's event; the job will be tried again later");
                self.retry_later(delivery, &format!("event refused: {refusal}"))
                    .await
            }
            Err(QueueError::Refused(refusal)) => {
                tracing::error!(job = %self.job.id, %refusal, "the broker refused the failed job's event; the job is in the dead-letter queue");
                finished();
                ack(delivery, Handled::Finished(event.outcome)).await
            }
            Err(e) => {
                tracing::warn!(job = %self.job.id, error = %e, "could not publish the event; the job will come again");
                give_back(delivery).await
            }
        }
    }
}

fn fill(event: &mut JobEvent, report: &CopyReport) {
    event.outcome = match report.outcome {
        CopyOutcome::Copied => Outcome::Copied,
        CopyOutcome::AlreadyPresent => Outcome::AlreadyPresent,
    };
    event.digest = Some(report.digest.clone());
    event.platforms = report.platforms.clone();
    event.bytes_copied = report.bytes_sent;
    event.blobs_copied = report.blobs_copied;
    event.blobs_mounted = report.blobs_mounted;
    event.blobs_skipped = report.blobs_skipped;
    event.resolve_ms = millis(report.phases.resolve);
    event.blobs_ms = millis(report.phases.blobs);
    event.manifests_ms = millis(report.phases.manifests);
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sends the delivery to the dead-letter queue with `reason` and acknowledges it; when the
/// broker refuses, gives it back after a pause.
async fn dead_letter(broker: &Broker, delivery: Delivery, reason: &str, done: Handled) -> Handled {
    match broker.publish_dead(&delivery.to_message(), reason).await {
        Ok(()) => ack(delivery, done).await,
        Err(QueueError::Refused(refusal)) => {
            tracing::error!(id = %delivery.id, %refusal, "the broker refused the dead letter");
            give_back_later(delivery).await
        }
        Err(e) => {
            tracing::warn!(id = %delivery.id, error = %e, "could not dead-letter the job; it will come again");
            give_back(delivery).await
        }
    }
}

async fn ack(delivery: Delivery, handled: Handled) -> Handled {
    match delivery.ack().await {
        Ok(()) => handled,
        Err(e) => {
            tracing::warn!(error = %e, "ack failed; the job will come again");
            Handled::Returned
        }
    }
}

/// Gives the delivery back after [`REFUSED_PAUSE`], holding its prefetch slot meanwhile.
async fn give_back_later(delivery: Delivery) -> Handled {
    tokio::time::sleep(REFUSED_PAUSE).await;
    give_back(delivery).await
}

async fn give_back(delivery: Delivery) -> Handled {
    if let Err(e) = delivery.requeue().await {
        tracing::warn!(error = %e, "could not give the job back; the broker will redeliver it");
    }
    Handled::Returned
}
