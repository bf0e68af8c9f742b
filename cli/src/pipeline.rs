//! The roles in one process, shared by `run`, `add-tag` and `add-image`: the producer's
//! publish step, the worker loop with N jobs at once, and a run's committer (which records
//! exactly as a fleet's committer does, and ends once every job has ended), over the
//! in-memory queue (or RabbitMQ with --amqp-url), shown as it goes (`progress.rs`).
//!
//! A first stop (Ctrl-C, SIGTERM, stdout closed) stops taking jobs and tells the copies to
//! stop at their next checkpoint; what ended by then is recorded and summed up as usual, the
//! rest is counted as not finished.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use image_mirror_committer::{commit_run, BatchOptions, Committer, Destination, RunRecord};
use image_mirror_common::{Entry, JobEvent, MirrorJob};
use image_mirror_queue::memory::MemoryBroker;
use image_mirror_queue::{Broker, JobRetries};
use image_mirror_registry::QuotaView;
use image_mirror_worker::{run_worker, Activity, CopyEngine, Deferral, StopSignal, WorkerOptions};

use crate::args::{BrokerFlags, MetricsFlag};
use crate::broker::Patience;
use crate::progress::{Display, Setup};
use crate::stop::Why;
use crate::{broker, stop};

/// What a finished (or stopped) in-process run produced.
pub struct Mirrored {
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
    pub stopped: Option<Why>,
    /// Jobs (one per target) that had not ended when it stopped.
    pub unfinished: usize,
}

/// What the roles in one process read from the command line.
pub struct PipelineFlags<'a> {
    pub broker: &'a BrokerFlags,
    pub metrics: &'a MetricsFlag,
    /// Where the committer records.
    pub images_list: &'a Path,
    /// How progress is shown.
    pub display: Setup,
}

/// Mirrors `jobs` with `workers` jobs in progress at once.
pub async fn mirror(
    flags: &PipelineFlags<'_>,
    engine: CopyEngine,
    jobs: &[MirrorJob],
    workers: u16,
) -> Result<Mirrored> {
    let broker = Arc::new(match flags.broker.amqp_url {
        Some(_) => broker::rabbitmq(flags.broker, "run", Patience::Once).await?,
        None => Broker::Memory(MemoryBroker::new(in_process_retries(flags.broker))),
    });
    if let Some(addr) = flags.metrics.metrics_addr {
        crate::serve::start(addr, Some(Arc::clone(&broker))).await?;
    }
    let (stop_copies, activity) = (StopSignal::new(), Activity::new());
    let engine = engine
        .with_stop(stop_copies.clone())
        .with_activity(Arc::clone(&activity));
    let client = engine.client().clone();
    let started = Instant::now();
    let mut events = broker
        .consume(&broker.topology().committer(), BatchOptions::RUN.max as u16)
        .await?;
    let stop_asked = stop::requested();
    image_mirror_producer::publish(&broker, jobs).await?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let mut worker = tokio::spawn(run_worker(
        Arc::clone(&broker),
        engine,
        WorkerOptions {
            concurrency: workers.max(1),
            // Stopped, its copies stop at their checkpoints at once.
            grace: Duration::ZERO,
            // One run: a host that cannot be reached fails its jobs now, with the reason,
            // and a spent rate limit ends its jobs as deferred, naming the limit.
            retry_unreachable: false,
            deferral: Deferral::Report,
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let expected: HashSet<String> = jobs.iter().flat_map(MirrorJob::event_ids).collect();
    let display = Display::start(activity, &flags.display);
    let stopping = AtomicBool::new(false);
    let workers_ended = async {
        match (&mut worker).await {
            Ok(Ok(_)) if stopping.load(Ordering::Relaxed) => Ok(()),
            Ok(Ok(_)) => Err("they ended without an error".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("their task died: {e}")),
        }
    };
    let destination = Destination::Local(flags.images_list.to_path_buf());
    let committer = Committer {
        broker: &broker,
        registry: &client,
        destination: &destination,
        batch: BatchOptions::RUN,
    };
    let mut committed = Box::pin(commit_run(
        &committer,
        &mut events,
        &expected,
        workers_ended,
        |e, n| display.finished(e, n),
    ));
    let (collected, stopped) = tokio::select! {
        r = &mut committed => (r, None),
        why = stop_asked => {
            stopping.store(true, Ordering::Relaxed);
            stop_copies.stop();
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
            (committed.as_mut().await, Some(why))
        }
    };
    drop(committed);
    display.finish();
    // Every job ended (or the run failed): the workers stop as they would at a Ctrl-C.
    stop_copies.stop();
    if let Some(tx) = stop_tx.take() {
        let _ = tx.send(());
    }
    end_workers(worker).await;
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

/// The retry delays of jobs in this process: `--retry-delays`, else the in-process ones.
fn in_process_retries(flags: &BrokerFlags) -> JobRetries {
    flags
        .retry_delays
        .clone()
        .unwrap_or_else(JobRetries::in_process)
}

/// Waits for the worker loop, told to stop, to end.
async fn end_workers(worker: tokio::task::JoinHandle<Result<u64, image_mirror_queue::QueueError>>) {
    if worker.is_finished() {
        return;
    }
    match worker.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "the workers ended with an error after the run"),
        Err(e) => tracing::warn!(error = %e, "the workers' task died after the run"),
        Ok(Ok(_)) => {}
    }
}
