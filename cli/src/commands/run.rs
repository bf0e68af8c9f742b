//! `image-mirror run`: the monolithic mode. Plans a job per images-list entry and target (or,
//! with --discover, per new tag config.json finds), runs them with N workers over the
//! in-memory queue (or RabbitMQ with --amqp-url), collects every job's event, records the
//! discovered lines in images-list, and ends with a summary; exit 1 when any job failed,
//! naming each.

use anyhow::{Context, Result};
use futures_util::{stream, StreamExt};
use image_mirror_common::MirrorJob;
use image_mirror_producer::only_missing;
use image_mirror_worker::{Comparison, CopyEngine};

use crate::args::RunArgs;
use crate::discovery::Discovering;
use crate::exit::{BadInput, FAILED, OK};
use crate::pipeline::PipelineFlags;
use crate::planning::{plan, print_missing};
use crate::{discovery, pipeline, registry_client};

pub async fn run(args: &RunArgs) -> Result<u8> {
    let (entries, jobs, discovery_failed) = if args.discover {
        if args.filter.is_some() {
            return Err(BadInput(
                "--filter applies to images-list entries, not to --discover".into(),
            )
            .into());
        }
        let found = discovery::discover_keys(
            &Discovering {
                plan: &args.plan,
                registry: &args.registry,
                discovery: &args.discovery,
            },
            &[],
        )
        .await?;
        discovery::print_key_lines(&found.reports);
        let jobs = found.jobs(&args.plan)?;
        (found.list.len(), jobs, found.failed())
    } else {
        let (list, jobs) = plan(&args.plan, args.filter.as_deref())?;
        (list.len(), jobs, false)
    };
    let drift =
        registry_client::drift_policy(args.drift.on_drift, args.drift.backup_tag.as_deref())?;
    let engine = registry_client::engine(&args.registry, &args.transfer)?
        .with_drift(drift)
        .with_attachments(args.attach.options())
        .with_trusted_keys(args.attach.trusted_keys()?);
    let jobs = if args.missing {
        missing_only(&engine, jobs).await
    } else {
        jobs
    };
    if args.dry_run {
        return dry_run(&engine, &jobs).await;
    }
    let copies: usize = jobs.iter().map(|j| j.targets().len()).sum();
    if copies == jobs.len() {
        println!("{} jobs for {} entries", jobs.len(), entries);
    } else {
        println!(
            "{} jobs for {entries} entries ({copies} targets; each source read once for all)",
            jobs.len()
        );
    }
    let flags = PipelineFlags {
        broker: &args.broker,
        metrics: &args.metrics,
        images_list: args.plan.images_list(),
    };
    let Some(mirrored) = pipeline::mirror(&flags, engine, &jobs, args.workers).await? else {
        eprintln!("interrupted: jobs not finished will not be reported");
        return Ok(FAILED);
    };
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&mirrored.events).context("serialising the report")?;
        image_mirror_common::atomic_file::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    pipeline::record(args.plan.images_list(), &mirrored);
    pipeline::time_spent(&mirrored);
    pipeline::pulls(&mirrored);
    let code = pipeline::summary(&mirrored, args.fail_on_drift);
    Ok(if discovery_failed { FAILED } else { code })
}

/// The jobs whose targets lack their tag, as `--missing` asks; what was left alone is said.
async fn missing_only(engine: &CopyEngine, jobs: Vec<MirrorJob>) -> Vec<MirrorJob> {
    let missing = only_missing(engine.client(), jobs).await;
    print_missing(&missing);
    missing.jobs
}

async fn dry_run(engine: &CopyEngine, jobs: &[MirrorJob]) -> Result<u8> {
    let each_target: Vec<MirrorJob> = jobs
        .iter()
        .flat_map(|j| j.targets().into_iter().map(|t| j.for_target(&t)))
        .collect();
    let checks: Vec<_> = each_target
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
        let what = job.describe();
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
