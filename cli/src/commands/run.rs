//! `image-mirror run`: the monolithic mode. Plans a job per images-list entry and target (or,
//! with --discover, per new tag config.json finds), runs them with N workers over the
//! in-memory queue (or RabbitMQ with --amqp-url), collects every job's event, records the
//! discovered lines in images-list, and ends with a summary; exit 1 when any job failed,
//! naming each, 130 when interrupted.

use anyhow::{Context, Result};
use image_mirror_common::MirrorJob;
use image_mirror_producer::only_missing;
use image_mirror_worker::{Comparison, CopyEngine};
use serde_json::json;

use crate::args::RunArgs;
use crate::commands::plan;
use crate::discovery::Discovering;
use crate::exit::{BadInput, FAILED, OK};
use crate::outln;
use crate::pipeline::PipelineFlags;
use crate::planning::{plan, print_missing};
use crate::progress::Setup;
use crate::run_report::{report, Reporting};
use crate::{discovery, notifications, pipeline, registry_client};

pub async fn run(args: &RunArgs) -> Result<u8> {
    let started = chrono::Utc::now();
    let notifier = notifications::notifier(&args.notify, "run")?;
    let (entries, jobs, rules_failed) = if args.discover {
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
        (found.list.len(), jobs, found.failed_rules())
    } else {
        let (list, jobs) = plan(&args.plan, args.filter.as_deref())?;
        (list.len(), jobs, 0)
    };
    let drift =
        registry_client::drift_policy(args.drift.on_drift, args.drift.backup_tag.as_deref())?;
    let engine = registry_client::engine(&args.registry, &args.transfer)?
        .with_drift(drift)
        .with_attachments(args.attach.options())
        .with_trust(args.attach.trust()?)
        .with_platforms(args.plan.platforms.platforms.clone())
        .with_on_sparse_refused(args.sparse.policy())
        .with_policy_hook(args.policy.hook())
        .with_attester(args.attach.attester()?);
    let jobs = if args.missing {
        missing_only(&engine, jobs).await
    } else {
        jobs
    };
    if args.dry_run {
        return dry_run(&engine, &jobs, args).await;
    }
    if !args.output.json() {
        let copies: usize = jobs.iter().map(|j| j.targets().len()).sum();
        if copies == jobs.len() {
            outln!("{} jobs for {} entries", jobs.len(), entries);
        } else {
            outln!(
                "{} jobs for {entries} entries ({copies} targets; each source read once for all)",
                jobs.len()
            );
        }
    }
    let flags = PipelineFlags {
        broker: Some(&args.broker),
        metrics: &args.metrics,
        images_list: args.plan.images_list(),
        display: Setup {
            jobs: jobs.iter().map(|j| j.targets().len()).sum(),
            interval: args.progress.progress_interval,
            job_lines: !args.output.json(),
        },
    };
    let mirrored = pipeline::mirror(&flags, engine, &jobs, args.workers).await?;
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&mirrored.events).context("serialising the report")?;
        image_mirror_common::atomic_file::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let status = report(
        &mirrored,
        &Reporting {
            json: args.output.json(),
            images_list: args.plan.images_list(),
            fail_on_drift: args.fail_on_drift,
            rules_failed,
        },
    );
    let cache_dir = args.transfer.cache_dir.as_deref();
    notifications::mirrored(&notifier, cache_dir, "run", started, &mirrored, status).await;
    Ok(status)
}

/// The jobs whose targets lack their tag, as `--missing` asks; what was left alone is said.
async fn missing_only(engine: &CopyEngine, jobs: Vec<MirrorJob>) -> Vec<MirrorJob> {
    let missing = only_missing(engine.client(), jobs).await;
    print_missing(&missing);
    missing.jobs
}

/// `--dry-run`: how each target stands against its source, reading only.
async fn dry_run(engine: &CopyEngine, jobs: &[MirrorJob], args: &RunArgs) -> Result<u8> {
    let json = args.output.json();
    let compared = engine.compare_jobs(jobs).await;
    let (mut missing, mut differs, mut current, mut errors) = (0, 0, 0, 0);
    let mut rows = Vec::new();
    for c in &compared {
        let what = c.job.describe();
        let row = match &c.result {
            Ok(Comparison::UpToDate { digest }) => {
                current += 1;
                json!({"job": what, "state": "up_to_date", "digest": digest})
            }
            Ok(Comparison::Missing { source }) => {
                missing += 1;
                if !json {
                    outln!("missing  {what} ({source})");
                }
                json!({"job": what, "state": "missing", "source": source})
            }
            Ok(Comparison::Differs { source, target }) => {
                differs += 1;
                if !json {
                    outln!("differs  {what} (source {source}, target {target})");
                }
                json!({"job": what, "state": "differs", "source": source, "target": target})
            }
            Err(e) => {
                errors += 1;
                if !json {
                    outln!("error    {what}: {} ({})", e, e.class());
                }
                json!({"job": what, "state": "error", "class": e.class(), "message": e.to_string()})
            }
        };
        rows.push(row);
    }
    // What the copies would cost: the plan's totals.
    let cost = engine.cost(jobs).await;
    let seconds = plan::seconds_at(&cost, &args.transfer.max_bandwidth);
    if json {
        outln!(
            "{}",
            json!({
                "summary": {"missing": missing, "differ": differs, "up_to_date": current, "errors": errors},
                "targets": rows,
                "plan": plan::totals(&cost, seconds),
            })
        );
    } else {
        outln!(
            "dry run: {missing} missing, {differs} differ, {current} up to date, {errors} errors; nothing written"
        );
        outln!("{}", plan::totals_line(&cost, seconds));
    }
    Ok(if errors == 0 { OK } else { FAILED })
}
