//! The roles in one process, as `run`, `add-tag` and `add-image` wire them: the broker (the
//! in-memory one, or RabbitMQ with --amqp-url), `/metrics` when asked, the display of what
//! goes on (`progress.rs`), and the process's stop (Ctrl-C, SIGTERM, stdout closed); the run
//! itself is `image_mirror_pipeline::mirror`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use image_mirror_common::MirrorJob;
use image_mirror_pipeline::InProcess;
use image_mirror_queue::memory::MemoryBroker;
use image_mirror_queue::{Broker, JobRetries};
use image_mirror_worker::{Activity, CopyEngine};

use crate::args::{BrokerFlags, MetricsFlag};
use crate::broker::Patience;
use crate::progress::{Display, Setup};
use crate::stop::Why;
use crate::{broker, stop};

/// What a finished (or stopped) in-process run produced, and which signal stopped it.
pub type Mirrored = image_mirror_pipeline::Mirrored<Why>;

/// What the roles in one process read from the command line.
pub struct PipelineFlags<'a> {
    /// The broker; none for a run that must stay in this process (a bundle's registry is
    /// on its loopback).
    pub broker: Option<&'a BrokerFlags>,
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
    let broker = Arc::new(match flags.broker {
        Some(b) if b.amqp_url.is_some() => broker::rabbitmq(b, "run", Patience::Once).await?,
        b => Broker::Memory(MemoryBroker::new(in_process_retries(b))),
    });
    if let Some(addr) = flags.metrics.metrics_addr {
        crate::serve::start(addr, Some(Arc::clone(&broker))).await?;
    }
    let activity = Activity::new();
    let engine = engine.with_activity(Arc::clone(&activity));
    let display = Display::start(activity, &flags.display);
    let run = InProcess {
        broker,
        images_list: flags.images_list,
        workers,
    };
    let mirrored = image_mirror_pipeline::mirror(run, engine, jobs, stop::requested(), |e, n| {
        display.finished(e, n)
    })
    .await;
    display.finish();
    Ok(mirrored?)
}

/// The retry delays of jobs in this process: `--retry-delays`, else the in-process ones.
fn in_process_retries(flags: Option<&BrokerFlags>) -> JobRetries {
    flags
        .and_then(|f| f.retry_delays.clone())
        .unwrap_or_else(JobRetries::in_process)
}
