//! `image-mirror run`: the monolithic mode. Plans a job per images-list entry and target,
//! runs them with N workers over the in-memory queue (or RabbitMQ with --amqp-url), collects
//! every job's event, and ends with a summary; exit 1 when any job failed, naming each.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{stream, StreamExt};
use image_mirror_committer::collect_events;
use image_mirror_common::queue::memory::MemoryBroker;
use image_mirror_common::queue::{Broker, Message};
use image_mirror_common::{JobEvent, MirrorJob, Outcome};
use image_mirror_worker::{run_worker, Comparison, CopyEngine, WorkerOptions};

use crate::args::{GlobalArgs, RunArgs};
use crate::commands::producer::plan;
use crate::exit::{FAILED, OK};
use crate::progress::Progress;
use crate::{broker, registry_client, stop};

/// Retry delays of the in-memory queue: a run in one process waits less than a fleet does.
const IN_PROCESS_RETRY_DELAYS: [Duration; 5] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

pub async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<u8> {
    let (list, jobs) = plan(global, args.filter.as_deref())?;
    let engine = registry_client::engine(global)?;
    if args.dry_run {
        return dry_run(&engine, &jobs).await;
    }
    let broker = Arc::new(match global.amqp_url {
        Some(_) => broker::rabbitmq(global, "run").await?,
        None => Broker::Memory(MemoryBroker::new(IN_PROCESS_RETRY_DELAYS.to_vec())),
    });
    let started = Instant::now();
    let committer = broker.topology().committer();
    let mut events = broker.consume(&committer, 256).await?;
    let messages: Vec<Message> = jobs.iter().map(Message::for_job).collect();
    broker.publish_jobs(&messages).await?;
    println!("{} jobs for {} entries", jobs.len(), list.len());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(
        Arc::clone(&broker),
        engine,
        WorkerOptions {
            concurrency: args.workers.max(1),
            grace: Duration::from_secs(5),
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let expected: HashSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let total = expected.len();
    let progress = Progress::new(total);
    let collected = tokio::select! {
        r = collect_events(&mut events, &expected, |e, n| progress.finished(e, n)) => Some(r),
        () = stop::signal() => None,
    };
    progress.finish();
    let _ = stop_tx.send(());
    let _ = worker.await;
    let Some(collected) = collected else {
        eprintln!("interrupted: jobs not finished will not be reported");
        return Ok(FAILED);
    };
    let collected = collected?;
    let ordered: Vec<&JobEvent> = jobs.iter().filter_map(|j| collected.get(&j.id)).collect();
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&ordered).context("serialising the report")?;
        image_mirror_common::atomic_file::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(summary(&ordered, started.elapsed()))
}

fn summary(events: &[&JobEvent], elapsed: Duration) -> u8 {
    let count = |o: Outcome| events.iter().filter(|e| e.outcome == o).count();
    let bytes: u64 = events.iter().map(|e| e.bytes_copied).sum();
    println!(
        "summary: {} copied, {} already present, {} failed, {} bytes sent, {:.1}s",
        count(Outcome::Copied),
        count(Outcome::AlreadyPresent),
        count(Outcome::Failed),
        bytes,
        elapsed.as_secs_f64()
    );
    let failed: Vec<&&JobEvent> = events
        .iter()
        .filter(|e| e.outcome == Outcome::Failed)
        .collect();
    for e in &failed {
        let (class, message) = e
            .error
            .as_ref()
            .map_or(("unknown", ""), |f| (f.class.as_str(), f.message.as_str()));
        eprintln!(
            "failed: {}:{} -> {}:{}: {class}: {message}",
            e.source.short(),
            e.tag,
            e.target.short(),
            e.tag
        );
    }
    if failed.is_empty() {
        OK
    } else {
        FAILED
    }
}

async fn dry_run(engine: &CopyEngine, jobs: &[MirrorJob]) -> Result<u8> {
    let checks: Vec<_> = jobs
        .iter()
        .map(|job| async move {
            (
                job,
                engine.compare(&job.source_ref(), &job.target_ref()).await,
            )
        })
        .collect();
    let results: Vec<_> = stream::iter(checks).buffered(16).collect().await;
    let (mut missing, mut differs, mut current, mut errors) = (0, 0, 0, 0);
    for (job, result) in results {
        let what = format!(
            "{} -> {}",
            job.source_ref().short(),
            job.target_ref().short()
        );
        match result {
            Ok(Comparison::UpToDate { .. }) => current += 1,
            Ok(Comparison::Missing { source }) => {
                missing += 1;
                println!("missing  {what} ({source})");
            }
            Ok(Comparison::Differs { source, target }) => {
                differs += 1;
                println!("differs  {what} (source {source}, target {target})");
            }
            Err(e) => {
                errors += 1;
                println!("error    {what}: {} ({})", e, e.class());
            }
        }
    }
    println!(
        "dry run: {missing} missing, {differs} differ, {current} up to date, {errors} errors; nothing written"
    );
    Ok(if errors == 0 { OK } else { FAILED })
}
