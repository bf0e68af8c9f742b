//! The worker loop: takes jobs from the queue, copies, publishes the job's event (confirmed),
//! and only then acknowledges. Transient failures go to a delay queue with the next attempt
//! number; permanent ones, and the last attempt, go to the dead-letter queue with their reason
//! and a `failed` event. Every step is idempotent: a job delivered twice copies nothing the
//! second time and publishes the same event again.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image_mirror_common::message::JobFailure;
use image_mirror_common::queue::topology::MAX_ATTEMPTS;
use image_mirror_common::queue::{Broker, Delivery, Message, QueueError};
use image_mirror_common::{metrics, trace_context, JobEvent, MirrorJob, Outcome};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::copy::{CopyEngine, CopyOutcome};

/// How a worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Jobs in progress at once (also the prefetch).
    pub concurrency: u16,
    /// After a stop signal, how long jobs in progress may take before they are left for
    /// redelivery.
    pub grace: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            grace: Duration::from_secs(30),
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
pub async fn run_worker(
    broker: Arc<Broker>,
    engine: CopyEngine,
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
                if done.is_ok() {
                    handled += 1;
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let (broker, engine) = (Arc::clone(&broker), engine.clone());
                    running.spawn(async move { handle(&broker, &engine, delivery).await });
                }
                Some(Err(e)) => return Err(e),
                None => break,
            },
        }
    }
    tracing::info!(in_progress = running.len(), "stopping: no new jobs taken");
    let drain = async {
        while let Some(done) = running.join_next().await {
            if done.is_ok() {
                handled += 1;
            }
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

/// Handles one delivery to the end: event published and acknowledged, retry scheduled, or
/// given back.
pub async fn handle(broker: &Broker, engine: &CopyEngine, delivery: Delivery) -> Handled {
    let attempt = delivery.attempt();
    let job = match MirrorJob::from_json(&delivery.body) {
        Ok(job) => job,
        Err(e) => {
            // Nothing can make this message readable: keep it for people to look at.
            let reason = format!("malformed: {e}");
            tracing::error!(id = %delivery.id, %reason, "dead-lettering an unreadable job");
            return match broker.publish_dead(&delivery.to_message(), &reason).await {
                Ok(()) => ack(delivery, Handled::Finished(Outcome::Failed)).await,
                Err(_) => give_back(delivery).await,
            };
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
    let handled = run_job(broker, engine, delivery, job, attempt, &span)
        .instrument(span.clone())
        .await;
    metrics::JOBS_IN_FLIGHT.add(&[], -1.0);
    handled
}

async fn run_job(
    broker: &Broker,
    engine: &CopyEngine,
    delivery: Delivery,
    job: MirrorJob,
    attempt: u32,
    span: &tracing::Span,
) -> Handled {
    let started = Instant::now();
    let result = engine.copy(&job.source_ref(), &job.target_ref()).await;
    let mut event = JobEvent::for_job(&job, Outcome::Failed);
    event.attempts = attempt;
    event.duration_ms = millis(started.elapsed());
    match result {
        Ok(report) => {
            event.outcome = match report.outcome {
                CopyOutcome::Copied => Outcome::Copied,
                CopyOutcome::AlreadyPresent => Outcome::AlreadyPresent,
            };
            span.record("job.digest", tracing::field::display(&report.digest));
            event.digest = Some(report.digest);
            event.platforms = report.platforms;
            event.bytes_copied = report.bytes_sent;
            event.blobs_copied = report.blobs_copied;
            event.blobs_mounted = report.blobs_mounted;
            event.blobs_skipped = report.blobs_skipped;
            event.resolve_ms = millis(report.phases.resolve);
            event.blobs_ms = millis(report.phases.blobs);
            event.manifests_ms = millis(report.phases.manifests);
            span.record("job.bytes_copied", report.bytes_sent);
            tracing::info!(job = %job.id, source = %job.source_ref(), target = %job.target_ref(), outcome = event.outcome.as_str(), "job done");
        }
        Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
            tracing::warn!(job = %job.id, attempt, error = %e, "transient failure; retrying later");
            return match broker.publish_retry(&delivery.to_message(), attempt).await {
                Ok(()) => ack(delivery, Handled::Retrying(attempt + 1)).await,
                Err(_) => give_back(delivery).await,
            };
        }
        Err(e) => {
            let class = if e.is_transient() {
                format!("{}_exhausted", e.class())
            } else {
                e.class()
            };
            tracing::error!(job = %job.id, attempt, class, error = %e, "job failed");
            let reason = format!("{class}: {e}");
            if broker
                .publish_dead(&delivery.to_message(), &reason)
                .await
                .is_err()
            {
                return give_back(delivery).await;
            }
            event.error = Some(JobFailure {
                class,
                message: e.to_string(),
            });
        }
    }
    span.record("job.outcome", event.outcome.as_str());
    metrics::JOBS.inc(&[event.outcome.as_str()]);
    metrics::BYTES_COPIED.add(&[], event.bytes_copied as f64);
    metrics::JOB_DURATION.observe(started.elapsed().as_secs_f64());
    let publish = tracing::info_span!("worker.publish_event", outcome = event.outcome.as_str());
    let mut message = Message {
        id: job.id.clone(),
        body: event.to_json(),
        headers: delivery.headers.clone(),
    };
    trace_context::inject(&publish, &mut message.headers);
    match broker
        .publish_event(&event.routing_key(), &message)
        .instrument(publish)
        .await
    {
        Ok(()) => ack(delivery, Handled::Finished(event.outcome)).await,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "could not publish the event; the job will come again");
            give_back(delivery).await
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

async fn give_back(delivery: Delivery) -> Handled {
    if let Err(e) = delivery.requeue().await {
        tracing::warn!(error = %e, "could not give the job back; the broker will redeliver it");
    }
    Handled::Returned
}
