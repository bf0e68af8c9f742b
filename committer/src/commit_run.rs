//! A run's committer: the committer loop ([`run_committer`]) over the events of one run, which
//! also follows the run event by event and ends once every job of it has ended. It is the
//! event sink of the monolithic `run` and `add-tag`, so that they record lines exactly as a
//! fleet's committer does: the target's digest checked, the lines written in order,
//! atomically, and a line whose target does not hold what its event says left out.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use image_mirror_common::{Entry, JobEvent};
use image_mirror_queue::{Consumer, QueueError};
use tokio::sync::Notify;

use crate::runner::{run_committer, BatchOutcome, BatchResult, Committer, CommitterError};

/// Why a run's committer stopped before every job had ended.
#[derive(Debug, thiserror::Error)]
pub enum CommitRunError {
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The committer could not record.
    #[error(transparent)]
    Committer(CommitterError),
    /// The workers that would have produced the missing events ended.
    #[error("the workers stopped before every job had ended: {0}")]
    WorkersStopped(String),
}

/// What a run's committer saw and did.
#[derive(Debug, Default)]
pub struct RunRecord {
    /// The last event of each job of the run, by event id.
    pub events: HashMap<String, JobEvent>,
    /// The lines the run added to the images-list (those already there left out).
    pub recorded: Vec<Entry>,
    /// Lines not recorded, each with why (the target does not hold what the event says).
    pub rejected: Vec<String>,
}

impl RunRecord {
    /// Takes in one settled batch: its events of the run's jobs (each shown to `on_event`
    /// with how many jobs have ended), its lines and its rejections.
    fn take(
        &mut self,
        outcome: &BatchOutcome,
        expected: &HashSet<String>,
        on_event: &mut impl FnMut(&JobEvent, usize),
    ) {
        for event in outcome.read.iter().filter(|e| expected.contains(&e.job_id)) {
            let first = !self.events.contains_key(&event.job_id);
            on_event(event, self.events.len() + usize::from(first));
            self.events.insert(event.job_id.clone(), event.clone());
        }
        if let BatchResult::Written(added) = &outcome.result {
            self.recorded.extend(added.iter().cloned());
        }
        self.rejected.extend(outcome.rejected.iter().cloned());
    }
}

/// How long a run's committer goes on taking events after its workers were stopped: what
/// they published before they ended is in the queue already.
const DRAIN: Duration = Duration::from_millis(500);

/// Runs `committer` over `consumer` until each id in `expected` has its event, while
/// `workers_ended` has not completed: events that will never come are not waited for. Workers
/// that end with an error (why) end the run with it; workers that were stopped (`Ok`) end it
/// with the events they published before, recorded. Events of other jobs are recorded as the
/// committer records any event, and left out of the run's events.
pub async fn commit_run(
    committer: &Committer<'_>,
    consumer: &mut Consumer,
    expected: &HashSet<String>,
    workers_ended: impl Future<Output = Result<(), String>>,
    mut on_event: impl FnMut(&JobEvent, usize),
) -> Result<RunRecord, CommitRunError> {
    let record = Mutex::new(RunRecord::default());
    let all_in = Notify::new();
    let stopped = Notify::new();
    let stop = async {
        if expected.is_empty() {
            return;
        }
        tokio::select! {
            () = all_in.notified() => {}
            () = async {
                stopped.notified().await;
                tokio::time::sleep(DRAIN).await;
            } => {}
        }
    };
    let workers = async {
        match workers_ended.await {
            Ok(()) => {
                stopped.notify_one();
                std::future::pending::<String>().await
            }
            Err(why) => why,
        }
    };
    let committed = run_committer(committer, consumer, stop, |outcome| {
        let mut record = record.lock().unwrap_or_else(|p| p.into_inner());
        record.take(outcome, expected, &mut on_event);
        if record.events.len() >= expected.len() {
            all_in.notify_one();
        }
    });
    tokio::select! {
        done = committed => done.map_err(|e| match e {
            CommitterError::Queue(q) => CommitRunError::Queue(q),
            other => CommitRunError::Committer(other),
        })?,
        why = workers => return Err(CommitRunError::WorkersStopped(why)),
    }
    Ok(record.into_inner().unwrap_or_else(|p| p.into_inner()))
}

#[cfg(test)]
mod tests {
    use image_mirror_queue::memory::MemoryBroker;
    use image_mirror_queue::Broker;
    use image_mirror_registry::{ClientOptions, RegistryClient};

    use super::*;
    use crate::batch::BatchOptions;
    use crate::runner::Recorder;

    #[tokio::test]
    async fn workers_that_stop_end_the_wait_with_why() {
        let broker = Broker::Memory(MemoryBroker::default());
        let mut events = broker
            .consume(&broker.topology().committer(), 8)
            .await
            .unwrap();
        let registry = RegistryClient::new(ClientOptions::default()).unwrap();
        let destination = Recorder::Local("images-list".into());
        let committer = Committer {
            broker: &broker,
            registry: &registry,
            destination: &destination,
            batch: BatchOptions {
                window: std::time::Duration::from_millis(10),
                max: 8,
                total: None,
            },
        };
        let expected = HashSet::from(["job-1".to_owned()]);
        let err = commit_run(
            &committer,
            &mut events,
            &expected,
            async { Err("the broker connection is gone".to_owned()) },
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the workers stopped before every job had ended: the broker connection is gone"
        );
    }
}
