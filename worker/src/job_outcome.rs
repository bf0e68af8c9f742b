//! What becomes of one delivery once its copy has run: for each target, an event, a retry, a
//! deferral or a dead letter, then the acknowledgement.
//!
//! A job may have several targets (one source read for all); each target's outcome is its
//! own: its event carries the id of (source, that target, tag), and the targets that must try
//! again (or wait for a quota) go back to the queue as a job of their own. Every way out is
//! bounded: a copy that panics is tried again after a delay; a publish the broker refuses sends
//! the job to a delay queue (or, when that is refused too, to the dead-letter queue), never
//! straight back into the jobs queue; a delivery is given back at once only when the broker
//! connection itself failed.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use image_mirror_common::message::JobFailure;
use image_mirror_common::{metrics, JobEvent, MirrorJob, Outcome, Repository};
use image_mirror_queue::trace_context;
use image_mirror_queue::{Broker, Delivery, Message, QueueError};
use image_mirror_registry::ErrorClass;
use tracing::Instrument;

use crate::copy::{CopyError, CopyOutcome, CopyReport};
use image_mirror_notify::{DeadLettered, Notice, Notifier};

use crate::job::{Deferral, Handled, Mirror, WorkerOptions};

/// The pause before a delivery is given back after the broker refused what the worker
/// published for it (so that a refusal never turns into a tight loop).
const REFUSED_PAUSE: Duration = Duration::from_secs(5);

/// One delivery of one job, from copy to acknowledgement.
pub(crate) struct JobRun<'a> {
    pub(crate) broker: &'a Broker,
    pub(crate) options: WorkerOptions,
    pub(crate) job: MirrorJob,
    pub(crate) attempt: u32,
    pub(crate) span: tracing::Span,
}

/// What one target's copy came to, as the queue sees it.
enum Disposition {
    Done(JobEvent),
    TryAgain(String),
    /// A registry's rate limit is spent for this long; the event says so.
    Defer(Duration, JobEvent),
    Failed(JobEvent, String),
}

/// What is left to send back to the queue for a delivery, target by target.
#[derive(Default)]
struct Settling {
    again: Vec<Repository>,
    why_again: Vec<String>,
    deferred: Vec<Repository>,
    wait: Duration,
    outcome: Option<Outcome>,
}

/// Why a delivery cannot be settled now.
enum Unsettled {
    /// The broker refused: give it back after a pause.
    Refused,
    /// The broker is unreachable: give it back now.
    Broker,
}

impl JobRun<'_> {
    pub(crate) async fn run<M: Mirror>(self, mirror: &M, delivery: Delivery) -> Handled {
        let started = Instant::now();
        let copied = AssertUnwindSafe(mirror.mirror(&self.job))
            .catch_unwind()
            .await;
        let outcomes = match copied {
            Ok(outcomes) => outcomes,
            Err(panic) => {
                let why = panic_text(&panic);
                tracing::error!(job = %self.job.id, attempt = self.attempt, panic = %why, "the copy panicked; the job will be tried again later");
                let targets = self.job.targets();
                return self
                    .retry_later(delivery, &targets, &format!("panicked: {why}"))
                    .await;
            }
        };
        if outcomes
            .iter()
            .any(|o| matches!(o.result, Err(CopyError::Interrupted)))
        {
            // Stopping: the job comes again, as it was, where it will go on from its
            // checkpoints.
            tracing::info!(job = %self.job.id, "stopped before the copy ended; the job will come again");
            return give_back(delivery).await;
        }
        let verdicts: Vec<(Repository, Disposition)> = outcomes
            .into_iter()
            .map(|o| {
                let target = o.target.repository().clone();
                let verdict = self.judge(&target, o.result, started);
                (target, verdict)
            })
            .collect();
        let mut settling = Settling::default();
        match self
            .publish_outcomes(&delivery, verdicts, &mut settling)
            .await
        {
            Ok(()) => {}
            Err(Unsettled::Refused) => return give_back_later(delivery).await,
            Err(Unsettled::Broker) => return give_back(delivery).await,
        }
        self.send_back(delivery, settling).await
    }

    /// One target's result as an event, a retry, a deferral, or a failure with its
    /// dead-letter reason.
    fn judge(
        &self,
        target: &Repository,
        result: Result<CopyReport, CopyError>,
        started: Instant,
    ) -> Disposition {
        let job = self.job.for_target(target);
        let mut event = JobEvent::for_job(&job, Outcome::Failed);
        event.attempts = self.attempt;
        event.duration_ms = millis(started.elapsed());
        let e = match result {
            Ok(report) => {
                fill(&mut event, &report);
                self.span
                    .record("job.digest", tracing::field::display(&report.digest));
                self.span.record("job.bytes_copied", report.bytes_sent);
                tracing::info!(job = %job.id, source = %job.source_ref(), target = %job.target_ref(), outcome = event.outcome.as_str(), "job done");
                return Disposition::Done(event);
            }
            Err(e) => e,
        };
        let retryable = match e.error_class() {
            ErrorClass::Transient => true,
            ErrorClass::Unreachable => self.options.retry_unreachable,
            ErrorClass::Deferred => {
                let wait = e.deferred_for().unwrap_or(Duration::from_secs(60));
                metrics::DEFERRED.inc(&[e.registry()]);
                tracing::info!(job = %job.id, source = %job.source_ref(), target = %job.target_ref(), error = %e, "job deferred");
                event.outcome = Outcome::Deferred;
                event.error = Some(JobFailure {
                    class: e.class(),
                    message: e.to_string(),
                });
                return Disposition::Defer(wait, event);
            }
            ErrorClass::Permanent => false,
        };
        if retryable && self.attempt < self.broker.topology().retries().max_attempts() {
            tracing::debug!(job = %job.id, attempt = self.attempt, error = %e, "transient failure; retrying later");
            return Disposition::TryAgain(e.to_string());
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
        Disposition::Failed(event, reason)
    }

    /// Dead-letters the targets that failed and publishes every target's event; notes the
    /// targets that go back to the queue.
    async fn publish_outcomes(
        &self,
        delivery: &Delivery,
        verdicts: Vec<(Repository, Disposition)>,
        settling: &mut Settling,
    ) -> Result<(), Unsettled> {
        for (target, verdict) in verdicts {
            match verdict {
                Disposition::Done(event) => {
                    settling.outcome.get_or_insert(event.outcome);
                    if let Err(refusal) = self.publish_event(&event, delivery).await? {
                        tracing::error!(job = %event.job_id, %refusal, "the broker refused the job's event; the job will be tried again later");
                        settling.why_again.push(format!("event refused: {refusal}"));
                        settling.again.push(target);
                    }
                }
                Disposition::TryAgain(why) => {
                    settling.why_again.push(why);
                    settling.again.push(target);
                }
                Disposition::Defer(wait, event) => match self.options.deferral {
                    Deferral::Report => {
                        settling.outcome.get_or_insert(Outcome::Deferred);
                        // The event is how the job is reported: no ack without it.
                        if let Err(refusal) = self.publish_event(&event, delivery).await? {
                            tracing::error!(job = %event.job_id, %refusal, "the broker refused the deferred job's event; the job will be tried again later");
                            settling.why_again.push(format!("event refused: {refusal}"));
                            settling.again.push(target);
                        }
                    }
                    Deferral::DelayQueue => {
                        settling.wait = settling.wait.max(wait);
                        settling.deferred.push(target);
                    }
                },
                Disposition::Failed(event, reason) => {
                    settling.outcome.get_or_insert(Outcome::Failed);
                    // The event first: a failure nobody heard of is not settled, so a refused
                    // event sends the target to wait like any other, never to an ack.
                    if let Err(refusal) = self.publish_event(&event, delivery).await? {
                        tracing::error!(job = %event.job_id, %refusal, "the broker refused the failed job's event; the job will be tried again later");
                        settling
                            .why_again
                            .push(format!("{reason}; event refused: {refusal}"));
                        settling.again.push(target);
                        continue;
                    }
                    let message = self.message_for(delivery, &[target]);
                    match self.broker.publish_dead(&message, &reason).await {
                        Ok(()) => {
                            if let Some(n) = &self.options.notifier {
                                n.send_in_background(Notice::JobDeadLettered(DeadLettered {
                                    job: event.describe(),
                                    job_id: event.job_id.clone(),
                                    class: event
                                        .error
                                        .as_ref()
                                        .map_or_else(|| "failed".to_owned(), |f| f.class.clone()),
                                    message: reason.clone(),
                                    attempts: self.attempt,
                                }));
                            }
                        }
                        Err(QueueError::Refused(refusal)) => {
                            tracing::error!(job = %event.job_id, %refusal, "the broker refused the dead letter");
                            return Err(Unsettled::Refused);
                        }
                        Err(e) => {
                            tracing::warn!(job = %event.job_id, error = %e, "could not dead-letter the job; it will come again");
                            return Err(Unsettled::Broker);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Publishes one target's event (confirmed): `Ok(Err(refusal))` when the broker refused
    /// it.
    async fn publish_event(
        &self,
        event: &JobEvent,
        delivery: &Delivery,
    ) -> Result<Result<(), String>, Unsettled> {
        let publish = tracing::info_span!("worker.publish_event", outcome = event.outcome.as_str());
        let mut message = Message {
            id: event.job_id.clone(),
            body: event.to_json(),
            headers: delivery.headers.clone(),
        };
        trace_context::inject(&publish, &mut message.headers);
        // Counted before the event leaves, so that whoever reads the event sees it counted
        // (a refused event, tried again later, is counted again then).
        self.span.record("job.outcome", event.outcome.as_str());
        metrics::JOBS.inc(&[event.outcome.as_str()]);
        metrics::BYTES_COPIED.add(&[], event.bytes_copied as f64);
        metrics::JOB_DURATION.observe(event.duration_ms as f64 / 1000.0);
        metrics::count_attachments(event);
        let published = self
            .broker
            .publish_event(&event.routing_key(), &message)
            .instrument(publish)
            .await;
        match published {
            Ok(()) => Ok(Ok(())),
            Err(QueueError::Refused(refusal)) => Ok(Err(refusal)),
            Err(e) => {
                tracing::warn!(job = %event.job_id, error = %e, "could not publish the event; the job will come again");
                Err(Unsettled::Broker)
            }
        }
    }

    /// The targets that try again go to a delay queue, those waiting for a quota to theirs;
    /// then the delivery is acknowledged.
    async fn send_back(self, delivery: Delivery, settling: Settling) -> Handled {
        if !settling.deferred.is_empty() {
            let message = self.message_for(&delivery, &settling.deferred);
            match self.broker.publish_deferred(&message, settling.wait).await {
                Ok(_) => self.span.record("job.outcome", "deferred"),
                Err(e) => {
                    tracing::warn!(job = %self.job.id, error = %e, "could not defer the job; it will come again");
                    return give_back_later(delivery).await;
                }
            };
        }
        if !settling.again.is_empty() {
            let why = settling.why_again.join("; ");
            return self.retry_later(delivery, &settling.again, &why).await;
        }
        let handled = if settling.deferred.is_empty() {
            Handled::Finished(settling.outcome.unwrap_or(Outcome::Failed))
        } else {
            Handled::Deferred(settling.wait)
        };
        ack(delivery, handled).await
    }

    /// Sends `targets` of the job to the next delay queue; when the attempts are spent or the
    /// broker refuses, to the dead-letter queue. Then acknowledges the delivery.
    async fn retry_later(self, delivery: Delivery, targets: &[Repository], why: &str) -> Handled {
        let message = self.message_for(&delivery, targets);
        if self.attempt >= self.broker.topology().retries().max_attempts() {
            let reason = format!("attempts spent; last: {why}");
            let told = DeadLettered {
                job: self.job.describe(),
                job_id: self.job.id.clone(),
                class: "transient_exhausted".into(),
                message: reason.clone(),
                attempts: self.attempt,
            };
            let handled = dead_letter(self.broker, delivery, &message, &reason).await;
            tell_dead(self.options.notifier.as_ref(), &handled, told);
            return handled;
        }
        match self.broker.publish_retry(&message, self.attempt).await {
            Ok(()) => ack(delivery, Handled::Retrying(self.attempt + 1)).await,
            Err(QueueError::Refused(refusal)) => {
                tracing::error!(job = %self.job.id, %refusal, "the broker refused the retry; dead-lettering the job");
                let reason = format!("retry refused by the broker ({refusal}); last: {why}");
                dead_letter(self.broker, delivery, &message, &reason).await
            }
            Err(e) => {
                tracing::warn!(job = %self.job.id, error = %e, "could not schedule the retry; the job will come again");
                give_back(delivery).await
            }
        }
    }

    /// The delivery's message for `targets` of its job alone (all of them: the message as it
    /// came).
    fn message_for(&self, delivery: &Delivery, targets: &[Repository]) -> Message {
        if targets == self.job.targets().as_slice() {
            return delivery.to_message();
        }
        match self.job.with_targets(targets) {
            Some(job) => Message {
                id: job.id.clone(),
                body: job.to_json(),
                headers: delivery.headers.clone(),
            },
            None => delivery.to_message(),
        }
    }
}

fn fill(event: &mut JobEvent, report: &CopyReport) {
    event.outcome = match report.outcome {
        CopyOutcome::Copied => Outcome::Copied,
        CopyOutcome::AlreadyPresent => Outcome::AlreadyPresent,
        CopyOutcome::Drifted => Outcome::Drifted,
    };
    event.digest = Some(report.digest.clone());
    event.target_digest = report.target_digest.clone();
    event.platforms = report.platforms.clone();
    event.platform_subset = report.platform_subset.clone();
    event.bytes_copied = report.bytes_sent;
    event.blobs_copied = report.blobs_copied;
    event.blobs_mounted = report.blobs_mounted;
    event.blobs_skipped = report.blobs_skipped;
    event.resolve_ms = millis(report.phases.resolve);
    event.blobs_ms = millis(report.phases.blobs);
    event.manifests_ms = millis(report.phases.manifests);
    event.referrers_copied = report.attached.referrers;
    event.digest_tags_copied = report.attached.digest_tags;
    event.signed_by.clone_from(&report.attached.verified_by);
    event.identity_verified = report.attached.identity_verified;
    event.attestation = report.attached.attestation.map(str::to_owned);
    event.policy = report.attached.policy.map(str::to_owned);
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

/// Tells `notifier` (in the background) of a job sent to the dead-letter queue, when it was.
pub(crate) fn tell_dead(
    notifier: Option<&std::sync::Arc<Notifier>>,
    handled: &Handled,
    told: DeadLettered,
) {
    if let (Some(n), Handled::Finished(Outcome::Failed)) = (notifier, handled) {
        n.send_in_background(Notice::JobDeadLettered(told));
    }
}

/// Sends `message` to the dead-letter queue with `reason` and acknowledges the delivery; when
/// the broker refuses, gives the delivery back after a pause.
pub(crate) async fn dead_letter(
    broker: &Broker,
    delivery: Delivery,
    message: &Message,
    reason: &str,
) -> Handled {
    match broker.publish_dead(message, reason).await {
        Ok(()) => ack(delivery, Handled::Finished(Outcome::Failed)).await,
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

pub(crate) async fn ack(delivery: Delivery, handled: Handled) -> Handled {
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
