//! The committer loop: batches of events become images-list lines, verified, then written in
//! place (local mode) or proposed as a pull request (GitHub mode). A batch's events are
//! acknowledged only after its change is durable; when it cannot be made, they go back to the
//! queue, so nothing is lost. An event that cannot be read goes to the events' dead-letter
//! queue with why, not into the void.
//!
//! Settling a batch reads as its steps: [`read`](read_events) the events, [`verify`] their
//! targets, then record the lines that hold.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::FusedFuture;
use futures_util::{stream, FutureExt, StreamExt};
use image_mirror_common::{metrics, Entry, ImagesListError, JobEvent};
use image_mirror_github::{GithubClient, GithubError};
use image_mirror_queue::trace_context;
use image_mirror_queue::{Broker, Consumer, Delivery, Headers, QueueError};
use image_mirror_registry::{RegistryClient, RegistryError};
use tracing::Instrument;

use crate::batch::{next_batch, BatchOptions};
use crate::local::record_in_file;
use crate::pull_request::{propose, Proposal, PullRequestSettings, Recorded, RewrittenFrom};
use crate::verify::{verify, Verdict};

/// Where recorded lines go.
#[derive(Debug, Clone)]
pub enum Recorder {
    /// The images-list file at this path, edited in place.
    Local(PathBuf),
    /// A pull request per batch.
    Github {
        /// The API client.
        client: Box<GithubClient>,
        /// The repository, base branch, path and label.
        settings: PullRequestSettings,
    },
}

/// What became of one batch.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// Events in the batch.
    pub events: usize,
    /// The events of the batch that could be read, in the batch's order.
    pub read: Vec<JobEvent>,
    /// Events whose line could not be verified at the target, or that could not be read,
    /// with why.
    pub rejected: Vec<String>,
    /// What was done with the verified lines.
    pub result: BatchResult,
}

/// What was done with a batch's verified lines.
#[derive(Debug, Clone)]
pub enum BatchResult {
    /// No event asked for a line.
    NothingToRecord,
    /// Local mode: the lines added to the file (those already there are left out).
    Written(Vec<Entry>),
    /// GitHub mode.
    Proposed(Proposal),
}

/// Why the committer stopped.
#[derive(Debug, thiserror::Error)]
pub enum CommitterError {
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// GitHub refused in a way retrying will not fix (the batch went back to the queue).
    #[error("{0} (the batch's events are back in the queue)")]
    Github(GithubError),
    /// The local images-list could not be read or written (the batch went back to the queue).
    #[error("{0} (the batch's events are back in the queue)")]
    File(ImagesListError),
}

/// How long to wait before trying a batch again after a transient failure.
const TRY_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// What the committer works with.
pub struct Committer<'a> {
    /// Where unreadable events go (the events' dead-letter queue).
    pub broker: &'a Broker,
    /// Asks target registries whether a line holds.
    pub registry: &'a RegistryClient,
    /// Where lines go.
    pub destination: &'a Recorder,
    /// How batches are cut.
    pub batch: BatchOptions,
}

/// Runs until `stop` completes or a permanent failure, calling `on_batch` after each batch.
pub async fn run_committer(
    committer: &Committer<'_>,
    consumer: &mut Consumer,
    stop: impl Future<Output = ()>,
    mut on_batch: impl FnMut(&BatchOutcome),
) -> Result<(), CommitterError> {
    metrics::touch_committer();
    // Fused: the stop may fire in the middle of a batch, and is not polled again after.
    let stop = stop.fuse();
    tokio::pin!(stop);
    let mut settled_so_far = 0;
    loop {
        if stop.is_terminated() {
            return Ok(());
        }
        let options = committer.batch.after(settled_so_far);
        let Some(deliveries) = next_batch(consumer, options, &mut stop).await? else {
            return Ok(());
        };
        let span = tracing::info_span!(
            "committer.batch",
            events = deliveries.len(),
            recorded = tracing::field::Empty,
        );
        if let Some(first) = deliveries.first() {
            trace_context::adopt(&span, &first.headers);
        }
        let settled = committer.settle(&deliveries).instrument(span.clone()).await;
        match settled {
            Ok(outcome) => {
                metrics::COMMITTER_BATCHES.inc(&["recorded"]);
                span.record("recorded", outcome.recorded());
                settled_so_far += deliveries.len();
                for d in deliveries {
                    d.ack().await?;
                }
                on_batch(&outcome);
            }
            Err(Failure::Transient(why)) => {
                metrics::COMMITTER_BATCHES.inc(&["failed"]);
                tracing::warn!(error = %why, "batch not recorded; its events go back to the queue");
                for d in deliveries {
                    d.requeue().await?;
                }
                if !stop.is_terminated() {
                    tokio::select! {
                        () = tokio::time::sleep(TRY_AGAIN_AFTER) => {}
                        () = &mut stop => return Ok(()),
                    }
                }
            }
            Err(Failure::Permanent(e)) => {
                metrics::COMMITTER_BATCHES.inc(&["failed"]);
                for d in deliveries {
                    d.requeue().await?;
                }
                return Err(e);
            }
        }
    }
}

impl BatchOutcome {
    /// Lines this batch added.
    pub fn recorded(&self) -> usize {
        match &self.result {
            BatchResult::Written(added) => added.len(),
            BatchResult::Proposed(Proposal::Opened { lines, .. }) => *lines,
            _ => 0,
        }
    }
}

enum Failure {
    Transient(String),
    Permanent(CommitterError),
}

/// An event to record and the headers it came with (its trace).
struct ToRecord<'a> {
    event: JobEvent,
    headers: &'a Headers,
}

impl Committer<'_> {
    async fn settle(&self, deliveries: &[Delivery]) -> Result<BatchOutcome, Failure> {
        let (read, mut rejected) = read_events(self.broker, deliveries).await?;
        let to_record: Vec<ToRecord<'_>> = read
            .iter()
            .filter(|r| r.event.is_to_record())
            .map(|r| ToRecord {
                event: r.event.clone(),
                headers: r.headers,
            })
            .collect();
        let verdicts = verify_all(self.registry, &to_record).await;
        let lines = holding(verdicts, &mut rejected)?;
        let result = if lines.is_empty() {
            BatchResult::NothingToRecord
        } else {
            record(self.destination, lines).await?
        };
        Ok(BatchOutcome {
            events: deliveries.len(),
            read: read.into_iter().map(|r| r.event).collect(),
            rejected,
            result,
        })
    }
}

/// The events of a batch, each with its headers. One that cannot be read goes to the events'
/// dead-letter queue with why (and is acknowledged with the batch); when even that fails, the
/// batch goes back to the queue.
async fn read_events<'a>(
    broker: &Broker,
    deliveries: &'a [Delivery],
) -> Result<(Vec<ToRecord<'a>>, Vec<String>), Failure> {
    let mut read = Vec::new();
    let mut rejected = Vec::new();
    for d in deliveries {
        match JobEvent::from_json(&d.body) {
            Ok(event) => read.push(ToRecord {
                event,
                headers: &d.headers,
            }),
            Err(e) => {
                let reason = format!("unreadable event: {e}");
                tracing::warn!(id = %d.id, %reason, "dead-lettering an event");
                broker
                    .publish_dead_event(&d.to_message(), &reason)
                    .await
                    .map_err(|e| Failure::Transient(format!("dead-lettering an event: {e}")))?;
                rejected.push(format!("message {}: {reason}", d.id));
            }
        }
    }
    Ok((read, rejected))
}

/// Asks each event's target, a few at a time, each in its span.
async fn verify_all<'a>(
    registry: &RegistryClient,
    events: &'a [ToRecord<'a>],
) -> Vec<(&'a JobEvent, Result<Verdict, RegistryError>)> {
    stream::iter(events.iter())
        .map(|r| {
            let span = tracing::info_span!(
                "committer.record",
                job.id = %r.event.job_id,
                verdict = tracing::field::Empty,
            );
            trace_context::adopt(&span, r.headers);
            let recorded = span.clone();
            async move {
                let v = verify(registry, &r.event).await;
                let verdict = match &v {
                    Ok(Verdict::Holds(_)) => "holds",
                    Ok(Verdict::Differs { .. }) => "differs",
                    Err(_) => "error",
                };
                recorded.record("verdict", verdict);
                (&r.event, v)
            }
            .instrument(span)
        })
        .buffered(8)
        .collect()
        .await
}

/// The lines whose target holds the event's digest, each once; the others are rejected with
/// why. A verification that may pass later sends the batch back.
fn holding(
    verdicts: Vec<(&JobEvent, Result<Verdict, RegistryError>)>,
    rejected: &mut Vec<String>,
) -> Result<Vec<Recorded>, Failure> {
    let mut lines: Vec<Recorded> = Vec::new();
    for (event, verdict) in verdicts {
        let what = event.describe();
        let why = match verdict {
            Ok(Verdict::Holds(digest)) => {
                let rewritten_from = event
                    .platform_subset
                    .as_ref()
                    .filter(|s| s.rewritten_digest.is_some())
                    .zip(event.digest.clone())
                    .map(|(_, source_digest)| RewrittenFrom {
                        source_digest,
                        platforms: event.platforms.clone(),
                    });
                let r = Recorded {
                    entry: event.entry(),
                    digest,
                    rewritten_from,
                };
                if !lines.contains(&r) {
                    lines.push(r);
                }
                continue;
            }
            Ok(Verdict::Differs { claimed, found }) => format!(
                "{what}: the event says {}, the target holds {}; not recorded",
                claimed.map_or("no digest".to_owned(), |d| d.to_string()),
                found.map_or("nothing".to_owned(), |d| d.to_string())
            ),
            Err(e) if e.is_transient() => {
                return Err(Failure::Transient(format!("verifying {what}: {e}")));
            }
            Err(e) => format!("{what}: cannot be verified ({e}); not recorded"),
        };
        tracing::warn!(job = %event.job_id, "{why}");
        rejected.push(why);
    }
    Ok(lines)
}

/// Writes the lines in place, or proposes them as a pull request.
async fn record(destination: &Recorder, lines: Vec<Recorded>) -> Result<BatchResult, Failure> {
    match destination {
        Recorder::Local(path) => {
            let entries: Vec<Entry> = lines.into_iter().map(|r| r.entry).collect();
            let path = path.clone();
            // Reading, writing and syncing the file block: off the async workers.
            let added = tokio::task::spawn_blocking(move || record_in_file(&path, &entries))
                .await
                .map_err(|e| Failure::Transient(format!("the file writer died: {e}")))?
                .map_err(|e| Failure::Permanent(CommitterError::File(e)))?;
            metrics::LINES_RECORDED.add(&["local"], added.len() as f64);
            Ok(BatchResult::Written(added))
        }
        Recorder::Github { client, settings } => {
            let span = tracing::info_span!(
                "committer.pull_request",
                repo = %settings.repo,
                lines = lines.len(),
                number = tracing::field::Empty,
            );
            let proposed = propose(client, settings, &lines)
                .instrument(span.clone())
                .await;
            match proposed {
                Ok(p) => {
                    match &p {
                        Proposal::Opened { number, lines, .. } => {
                            span.record("number", number);
                            metrics::LINES_RECORDED.add(&["pull_request"], *lines as f64);
                        }
                        Proposal::AlreadyProposed { numbers } => {
                            if let Some(n) = numbers.first() {
                                span.record("number", n);
                            }
                        }
                        Proposal::NothingNew => {}
                    }
                    Ok(BatchResult::Proposed(p))
                }
                Err(e) if e.transient => Err(Failure::Transient(e.to_string())),
                Err(e) => Err(Failure::Permanent(CommitterError::Github(e))),
            }
        }
    }
}
