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

use image_mirror_common::{metrics, MirrorJob};
use image_mirror_queue::trace_context;
use image_mirror_queue::{Broker, Delivery, QueueError};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::copy::stop::CHECKPOINT_GRACE;
use crate::job::{Handled, Mirror, WorkerOptions};
use crate::job_outcome::{dead_letter, tell_dead, JobRun};
use image_mirror_notify::DeadLettered;

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
                    let (broker, mirror, options) = (Arc::clone(&broker), mirror.clone(), options.clone());
                    running.spawn(async move { handle(&broker, &mirror, options, delivery).await });
                }
                Some(Err(e)) => return Err(e),
                None => break,
            },
        }
    }
    tracing::info!(in_progress = running.len(), "stopping: no new jobs taken");
    handled += drain(&mut running, options.grace).await;
    if !running.is_empty() {
        tracing::info!(
            left = running.len(),
            "grace period over; stopping the copies at their checkpoints, their jobs will be delivered again"
        );
        mirror.stop_copies();
        handled += drain(&mut running, CHECKPOINT_GRACE * 3).await;
        running.abort_all();
    }
    Ok(handled)
}

/// The deliveries handled while `running` ends, within `within`.
async fn drain(running: &mut JoinSet<Handled>, within: Duration) -> u64 {
    let mut handled = 0;
    let draining = async {
        while let Some(done) = running.join_next().await {
            handled += count(done);
        }
    };
    let _ = tokio::time::timeout(within, draining).await;
    handled
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
            let told = DeadLettered {
                job: format!("an unreadable job ({})", delivery.id),
                job_id: delivery.id.clone(),
                class: "malformed".into(),
                message: reason.clone(),
                attempts: attempt,
            };
            let handled = dead_letter(broker, delivery, &message, &reason).await;
            tell_dead(options.notifier.as_ref(), &handled, told);
            return handled;
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
