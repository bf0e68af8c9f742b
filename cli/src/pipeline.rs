//! The roles in one process, shared by `run` and `add-tag`: the producer's publish step, the
//! worker loop with N jobs at once, and a run's committer (which records exactly as a
//! fleet's committer does, and ends once every job has ended), over the in-memory queue (or
//! RabbitMQ with --amqp-url), showing progress.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use image_mirror_committer::{
    commit_run, BatchOptions, Committer, Destination, RunRecord, RunSummary,
};
use image_mirror_common::{Entry, JobEvent, MirrorJob, Outcome};
use image_mirror_queue::memory::MemoryBroker;
use image_mirror_queue::{Broker, JobRetries};
use image_mirror_registry::QuotaView;
use image_mirror_worker::{run_worker, CopyEngine, Deferral, WorkerOptions};

use crate::args::{BrokerFlags, MetricsFlag};
use crate::progress::Progress;
use crate::{broker, stop};

/// Retry delays of the in-memory queue (unless --retry-delays says otherwise): a run in one
/// process waits less than a fleet does.
const IN_PROCESS_RETRY_DELAYS: [Duration; 5] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

fn in_process_retries(flags: &BrokerFlags) -> Result<JobRetries> {
    match &flags.retry_delays {
        Some(retries) => Ok(retries.clone()),
        None => Ok(JobRetries::new(IN_PROCESS_RETRY_DELAYS.to_vec())?),
    }
}

/// How a run's committer cuts batches: a short window, so that the run ends soon after its
/// last event.
const RUN_BATCHES: BatchOptions = BatchOptions {
    window: Duration::from_millis(100),
    max: 256,
};

/// What a finished in-process run produced.
pub struct Mirrored {
    /// One event per job, in the jobs' order.
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
}

/// What the roles in one process read from the command line.
pub struct PipelineFlags<'a> {
    pub broker: &'a BrokerFlags,
    pub metrics: &'a MetricsFlag,
    /// Where the committer records.
    pub images_list: &'a Path,
}

/// Mirrors `jobs` with `workers` jobs in progress at once. `None` when a stop signal came
/// first.
pub async fn mirror(
    flags: &PipelineFlags<'_>,
    engine: CopyEngine,
    jobs: &[MirrorJob],
    workers: u16,
) -> Result<Option<Mirrored>> {
    let broker = Arc::new(match flags.broker.amqp_url {
        Some(_) => broker::rabbitmq(flags.broker, "run").await?,
        None => Broker::Memory(MemoryBroker::new(in_process_retries(flags.broker)?)),
    });
    if let Some(addr) = flags.metrics.metrics_addr {
        crate::serve::start(addr, Some(Arc::clone(&broker))).await?;
    }
    let client = engine.client().clone();
    let started = Instant::now();
    let mut events = broker
        .consume(&broker.topology().committer(), RUN_BATCHES.max as u16)
        .await?;
    image_mirror_producer::publish(&broker, jobs).await?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut worker = tokio::spawn(run_worker(
        Arc::clone(&broker),
        engine,
        WorkerOptions {
            concurrency: workers.max(1),
            grace: Duration::from_secs(5),
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
    let progress = Progress::new(expected.len());
    let workers_ended = async {
        match (&mut worker).await {
            Ok(Ok(_)) => "they ended without an error".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("their task died: {e}"),
        }
    };
    let destination = Destination::Local(flags.images_list.to_path_buf());
    let committer = Committer {
        broker: &broker,
        registry: &client,
        destination: &destination,
        batch: RUN_BATCHES,
    };
    let committed = commit_run(&committer, &mut events, &expected, workers_ended, |e, n| {
        progress.finished(e, n)
    });
    let collected = tokio::select! {
        r = committed => Some(r),
        () = stop::signal() => None,
    };
    progress.finish();
    let _ = stop_tx.send(());
    if !worker.is_finished() {
        match worker.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the workers ended with an error after the run")
            }
            Err(e) => tracing::warn!(error = %e, "the workers' task died after the run"),
        }
    }
    let Some(collected) = collected else {
        return Ok(None);
    };
    let RunRecord {
        events: mut collected,
        recorded,
        rejected,
    } = collected?;
    let events = jobs
        .iter()
        .flat_map(MirrorJob::event_ids)
        .filter_map(|id| collected.remove(&id))
        .collect();
    let stats = client.stats();
    Ok(Some(Mirrored {
        events,
        recorded,
        rejected,
        elapsed: started.elapsed(),
        retry_wait: Duration::from_millis(stats.retry_wait_ms.load(Ordering::Relaxed)),
        retries: stats.retries.load(Ordering::Relaxed),
        quotas: client.quotas(),
    }))
}

/// Prints the lines the committer added to the local images-list, and those it left out.
pub fn record(images_list: &Path, mirrored: &Mirrored) {
    for why in &mirrored.rejected {
        eprintln!("not recorded: {why}");
    }
    if mirrored.recorded.is_empty() {
        return;
    }
    println!(
        "recorded {} new line(s) in {}",
        mirrored.recorded.len(),
        images_list.display()
    );
    for e in &mirrored.recorded {
        println!("  + {}", e.line());
    }
}

/// Prints where the time of the jobs went, summed over jobs (several run at once).
pub fn time_spent(mirrored: &Mirrored) {
    let sum = |f: fn(&JobEvent) -> u64| {
        Duration::from_millis(mirrored.events.iter().map(f).sum::<u64>()).as_secs_f64()
    };
    let job_retries: u32 = mirrored
        .events
        .iter()
        .map(|e| e.attempts.saturating_sub(1))
        .sum();
    println!(
        "time in jobs (summed over jobs running at once): resolve {:.1}s, blob transfer {:.1}s, \
         manifest push {:.1}s, waiting on registry retries {:.1}s ({} requests retried, {} jobs retried)",
        sum(|e| e.resolve_ms),
        sum(|e| e.blobs_ms),
        sum(|e| e.manifests_ms),
        mirrored.retry_wait.as_secs_f64(),
        mirrored.retries,
        job_retries
    );
}

/// Prints the pulls (manifest GETs, as Docker Hub counts them) each registry cost.
pub fn pulls(mirrored: &Mirrored) {
    let spent: Vec<String> = mirrored
        .quotas
        .iter()
        .map(|(registry, q)| {
            let mut s = format!("{registry} {} pulls, {} HEADs", q.pulls, q.heads);
            if q.refused > 0 {
                s.push_str(&format!(", {} refused", q.refused));
            }
            if let Some(left) = q.remaining {
                s.push_str(&format!(", {left} left"));
            }
            s
        })
        .collect();
    if !spent.is_empty() {
        println!("registry quotas: {}", spent.join("; "));
    }
}

/// Prints each failure, one line per host that could not be reached, and the summary line;
/// the exit status (failed too when a line was left out of the images-list).
pub fn summary(mirrored: &Mirrored, fail_on_drift: bool) -> u8 {
    let (events, elapsed) = (&mirrored.events, mirrored.elapsed);
    let s = RunSummary::of(events);
    for e in events.iter().filter(|e| e.outcome == Outcome::Drifted) {
        let source = e.digest.as_ref().map_or(String::new(), ToString::to_string);
        let target = e
            .target_digest
            .as_ref()
            .map_or(String::new(), ToString::to_string);
        eprintln!(
            "drifted: {}: the target holds {target}, the source {source}; kept (--on-drift overwrite replaces it)",
            e.describe()
        );
    }
    for e in events.iter().filter(|e| e.outcome == Outcome::Failed) {
        let (class, message) = e
            .error
            .as_ref()
            .map_or(("unknown", ""), |f| (f.class.as_str(), f.message.as_str()));
        eprintln!("failed: {}: {class}: {message}", e.describe());
    }
    for e in events.iter().filter(|e| e.outcome == Outcome::Deferred) {
        let why = e.error.as_ref().map_or("", |f| f.message.as_str());
        eprintln!("deferred: {}: {why}", e.describe());
    }
    for host in &s.unreachable {
        eprintln!("unreachable: {} ({} jobs)", host.message, host.jobs);
    }
    let causes = if s.failed == 0 {
        String::new()
    } else {
        format!(" ({})", s.causes())
    };
    let deferred = if s.deferred == 0 {
        String::new()
    } else {
        format!(", {} deferred (rate limit)", s.deferred)
    };
    let drifted = if s.drifted == 0 {
        String::new()
    } else {
        format!(", {} drifted", s.drifted)
    };
    let attached = match (s.attached, s.signed) {
        (0, 0) => String::new(),
        (a, 0) => format!(", {a} referrers and digest tags"),
        (0, v) => format!(", {v} signatures verified"),
        (a, v) => format!(", {a} referrers and digest tags, {v} signatures verified"),
    };
    println!(
        "summary: {} copied, {} already present, {} failed{causes}{deferred}{drifted}{attached}, {} bytes sent, {:.1}s",
        s.copied,
        s.already_present,
        s.failed,
        s.bytes_sent,
        elapsed.as_secs_f64()
    );
    let recorded_all = mirrored.rejected.is_empty();
    if s.failed == 0 && s.deferred == 0 && (s.drifted == 0 || !fail_on_drift) && recorded_all {
        crate::exit::OK
    } else {
        crate::exit::FAILED
    }
}
