//! The committer loop: batches of events become images-list lines, verified, then written in
//! place (local mode) or proposed as a pull request (GitHub mode). A batch's events are
//! acknowledged only after its change is durable; when it cannot be made, they go back to the
//! queue, so nothing is lost.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::FusedFuture;
use futures_util::{stream, FutureExt, StreamExt};
use image_mirror_common::github::{GithubClient, GithubError};
use image_mirror_common::queue::{Consumer, Delivery, QueueError};
use image_mirror_common::registry::RegistryClient;
use image_mirror_common::{metrics, trace_context, Entry, ImagesListError, JobEvent, Outcome};
use tracing::Instrument;

use crate::batch::{next_batch, BatchOptions};
use crate::local::record_in_file;
use crate::pull_request::{propose, Proposal, PullRequestSettings, Recorded};
use crate::verify::{verify, Verdict};

/// Where recorded lines go.
#[derive(Debug, Clone)]
pub enum Destination {
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
    /// Events whose line could not be verified at the target, with why.
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

/// Runs until `stop` completes or a permanent failure, calling `on_batch` after each batch.
pub async fn run_committer(
    consumer: &mut Consumer,
    registry: &RegistryClient,
    destination: &Destination,
    batch: BatchOptions,
    stop: impl Future<Output = ()>,
    mut on_batch: impl FnMut(&BatchOutcome),
) -> Result<(), CommitterError> {
    // Fused: the stop may fire in the middle of a batch, and is not polled again after.
    let stop = stop.fuse();
    tokio::pin!(stop);
    loop {
        if stop.is_terminated() {
            return Ok(());
        }
        let Some(deliveries) = next_batch(consumer, batch, &mut stop).await? else {
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
        let settled = settle(registry, destination, &deliveries)
            .instrument(span.clone())
            .await;
        if let Ok(outcome) = &settled {
            let recorded = match &outcome.result {
                BatchResult::Written(added) => added.len(),
                BatchResult::Proposed(Proposal::Opened { lines, .. }) => *lines,
                _ => 0,
            };
            span.record("recorded", recorded);
        }
        match settled {
            Ok(outcome) => {
                for d in deliveries {
                    d.ack().await?;
                }
                on_batch(&outcome);
            }
            Err(Failure::Transient(why)) => {
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
                for d in deliveries {
                    d.requeue().await?;
                }
                return Err(e);
            }
        }
    }
}

enum Failure {
    Transient(String),
    Permanent(CommitterError),
}

async fn settle(
    registry: &RegistryClient,
    destination: &Destination,
    deliveries: &[Delivery],
) -> Result<BatchOutcome, Failure> {
    let mut to_check = Vec::new();
    for d in deliveries {
        match JobEvent::from_json(&d.body) {
            Ok(e) if e.record && matches!(e.outcome, Outcome::Copied | Outcome::AlreadyPresent) => {
                to_check.push((e, &d.headers));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable event skipped"),
        }
    }
    let verdicts: Vec<_> = stream::iter(to_check.iter())
        .map(|(e, headers)| {
            let span = tracing::info_span!(
                "committer.record",
                job.id = %e.job_id,
                verdict = tracing::field::Empty,
            );
            trace_context::adopt(&span, headers);
            let recorded = span.clone();
            async move {
                let v = verify(registry, e).await;
                recorded.record(
                    "verdict",
                    match &v {
                        Ok(Verdict::Holds(_)) => "holds",
                        Ok(Verdict::Differs { .. }) => "differs",
                        Err(_) => "error",
                    },
                );
                (e, v)
            }
            .instrument(span)
        })
        .buffered(8)
        .collect()
        .await;
    let mut lines: Vec<Recorded> = Vec::new();
    let mut rejected = Vec::new();
    for (event, verdict) in verdicts {
        let what = event.describe();
        match verdict {
            Ok(Verdict::Holds(digest)) => {
                let r = Recorded {
                    entry: event.entry(),
                    digest,
                };
                if !lines.contains(&r) {
                    lines.push(r);
                }
            }
            Ok(Verdict::Differs { claimed, found }) => {
                let why = format!(
                    "{what}: the event says {}, the target holds {}; not recorded",
                    claimed.map_or("no digest".to_owned(), |d| d.to_string()),
                    found.map_or("nothing".to_owned(), |d| d.to_string())
                );
                tracing::warn!(job = %event.job_id, "{why}");
                rejected.push(why);
            }
            Err(e) if e.is_transient() => {
                return Err(Failure::Transient(format!("verifying {what}: {e}")));
            }
            Err(e) => {
                let why = format!("{what}: cannot be verified ({e}); not recorded");
                tracing::warn!(job = %event.job_id, "{why}");
                rejected.push(why);
            }
        }
    }
    let result = if lines.is_empty() {
        BatchResult::NothingToRecord
    } else {
        match destination {
            Destination::Local(path) => {
                let entries: Vec<Entry> = lines.iter().map(|r| r.entry.clone()).collect();
                let added = record_in_file(path, &entries)
                    .map_err(|e| Failure::Permanent(CommitterError::File(e)))?;
                metrics::LINES_RECORDED.add(&["local"], added.len() as f64);
                BatchResult::Written(added)
            }
            Destination::Github { client, settings } => {
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
                            Proposal::Existing { number, .. } => {
                                span.record("number", number);
                            }
                            Proposal::NothingNew => {}
                        }
                        BatchResult::Proposed(p)
                    }
                    Err(e) if e.transient => return Err(Failure::Transient(e.to_string())),
                    Err(e) => return Err(Failure::Permanent(CommitterError::Github(e))),
                }
            }
        }
    };
    Ok(BatchOutcome {
        events: deliveries.len(),
        rejected,
        result,
    })
}
