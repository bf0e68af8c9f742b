//! One run: publish the jobs, copy them, record what holds, then stop the workers.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image_mirror_committer::{
    commit_run, BatchOptions, CommitRunError, Committer, Recorder, RunRecord,
};
use image_mirror_common::{Entry, JobEvent, MirrorJob};
use image_mirror_queue::{Broker, QueueError};
use image_mirror_registry::QuotaView;
use image_mirror_worker::{run_worker, CopyEngine, Deferral, StopSignal, WorkerOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The broker refused a publish or a consumer.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The run's committer stopped.
    #[error(transparent)]
    Commit(#[from] CommitRunError),
}

/// Where a run goes: its broker, the images-list it records in, and how many jobs at once.
pub struct InProcess<'a> {
    /// The broker the roles share.
    pub broker: Arc<Broker>,
    /// Where the committer records.
    pub images_list: &'a Path,
    /// Jobs in progress at once (at least one).
    pub workers: u16,
}

/// What a finished (or stopped) run produced; `S` is why it was stopped.
pub struct Mirrored<S> {
    /// One event per job that ended, in the jobs' order.
    pub events: Vec<JobEvent>,
    /// The lines the committer added to the images-list.
    pub recorded: Vec<Entry>,
    /// Lines the committer did not record, with why.
    pub rejected: Vec<String>,
    /// From publishing to the last event.
    pub elapsed: Duration,
    /// Time spent waiting before registry requests were tried again.
    pub retry_wait: Duration,
    /// Registry requests tried again.
    pub retries: u64,
    /// What each registry's quota came to: pulls, HEADs, refusals.
    pub quotas: Vec<(String, QuotaView)>,
    /// Why the run was stopped before every job ended, if it was.
    pub stopped: Option<S>,
    /// Jobs (one per target) that had not ended when it stopped.
    pub unfinished: usize,
}

/// The worker loop of a run.
type Loop = JoinHandle<Result<u64, QueueError>>;

/// The means to stop a run's workers.
struct Halt {
    stop_copies: StopSignal,
    stop_loop: Option<oneshot::Sender<()>>,
    /// Set when the run stops them on purpose.
    stopping: Arc<AtomicBool>,
}

impl Halt {
    /// Stops taking jobs; copies stop at their next checkpoint.
    fn stop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop_copies.stop();
        if let Some(tx) = self.stop_loop.take() {
            let _ = tx.send(());
        }
    }
}

fn start_workers(broker: &Arc<Broker>, engine: CopyEngine, concurrency: u16) -> (Loop, Halt) {
    let stop_copies = StopSignal::new();
    let engine = engine.with_stop(stop_copies.clone());
    let (stop_loop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_worker(
        Arc::clone(broker),
        engine,
        WorkerOptions {
            concurrency: concurrency.max(1),
            // Stopped, its copies stop at their checkpoints at once.
            grace: Duration::ZERO,
            // One run: a host that cannot be reached fails its jobs now, with the reason,
            // and a spent rate limit ends its jobs as deferred, naming the limit.
            retry_unreachable: false,
            deferral: Deferral::Report,
            // The run tells of itself once it has ended.
            notifier: None,
        },
        async {
            let _ = stopped.await;
        },
    ));
    let halt = Halt {
        stop_copies,
        stop_loop: Some(stop_loop),
        stopping: Arc::new(AtomicBool::new(false)),
    };
    (task, halt)
}

/// Ok when the loop ended because it was told to; else what ended it.
async fn workers_ended(task: &mut Loop, stopping: Arc<AtomicBool>) -> Result<(), String> {
    match task.await {
        Ok(Ok(_)) if stopping.load(Ordering::Relaxed) => Ok(()),
        Ok(Ok(_)) => Err("they ended without an error".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("their task died: {e}")),
    }
}

/// Waits for the loop, told to stop, to end.
async fn end_workers(task: Loop) {
    if task.is_finished() {
        return;
    }
    match task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "the workers ended with an error after the run"),
        Err(e) => tracing::warn!(error = %e, "the workers' task died after the run"),
        Ok(Ok(_)) => {}
    }
}

/// Mirrors `jobs` through `run`'s broker until every job ended or `stop` resolves; `finished`
/// hears of each event as it is collected, with how many have ended.
pub async fn mirror<S>(
    run: InProcess<'_>,
    engine: CopyEngine,
    jobs: &[MirrorJob],
    stop: impl Future<Output = S>,
    finished: impl Fn(&JobEvent, usize),
) -> Result<Mirrored<S>, PipelineError> {
    let broker = &run.broker;
    let client = engine.client().clone();
    let started = Instant::now();
    let mut events = broker
        .consume(&broker.topology().committer(), BatchOptions::RUN.max as u16)
        .await?;
    image_mirror_producer::publish(broker, jobs).await?;
    let (mut task, mut halt) = start_workers(broker, engine, run.workers);
    let expected: HashSet<String> = jobs.iter().flat_map(MirrorJob::event_ids).collect();
    let recorder = Recorder::Local(run.images_list.to_path_buf());
    // A batch that brings in the run's last event closes at once: the run does not wait out
    // the batch window after it.
    let batch = BatchOptions {
        total: Some(expected.len()),
        ..BatchOptions::RUN
    };
    let committer = Committer {
        broker,
        registry: &client,
        destination: &recorder,
        batch,
    };
    let (collected, stopped) = {
        let ended = workers_ended(&mut task, Arc::clone(&halt.stopping));
        let mut committed = Box::pin(commit_run(
            &committer,
            &mut events,
            &expected,
            ended,
            &finished,
        ));
        tokio::select! {
            r = &mut committed => (r, None),
            why = stop => {
                halt.stop();
                (committed.as_mut().await, Some(why))
            }
        }
    };
    // Every job ended (or the run failed): the workers stop as they would when asked.
    halt.stop();
    end_workers(task).await;
    let RunRecord {
        events: mut collected,
        recorded,
        rejected,
    } = collected?;
    let events: Vec<JobEvent> = jobs
        .iter()
        .flat_map(MirrorJob::event_ids)
        .filter_map(|id| collected.remove(&id))
        .collect();
    let stats = client.stats();
    Ok(Mirrored {
        unfinished: expected.len().saturating_sub(events.len()),
        events,
        recorded,
        rejected,
        elapsed: started.elapsed(),
        retry_wait: Duration::from_millis(stats.retry_wait_ms.load(Ordering::Relaxed)),
        retries: stats.retries.load(Ordering::Relaxed),
        quotas: client.quotas(),
        stopped,
    })
}
