//! `image-mirror export`, `import` and `serve`: bundles carried across an air gap. An export is
//! a run whose targets are a bundle, an import a run whose source is one
//! (`image_mirror_pipeline::bundle`); both print what `run` prints, and the export what it
//! wrote. `serve` answers for a bundle as a read-only registry until stopped.

use anyhow::{Context, Result};
use image_mirror_common::MirrorJob;
use image_mirror_layout::{Bundle, Catalog, Layout};
use image_mirror_pipeline::bundle::{BundleError, Export, Import};

use crate::args::{ExportArgs, ImportArgs, ProgressFlags, ServeArgs};
use crate::console::{say, Level};
use crate::exit::{BadInput, FAILED, OK};
use crate::pipeline::{Mirrored, PipelineFlags};
use crate::planning::plan;
use crate::progress::Setup;
use crate::run_report::{report, Reporting};
use crate::{outln, pipeline, registry_client, stop};

/// A bundle's own problems (its files, its names) are bad input; the rest is the run's.
fn bad(e: BundleError) -> anyhow::Error {
    match e {
        BundleError::Layout(_) | BundleError::Catalog(_) | BundleError::Name(_) => {
            BadInput(e.to_string()).into()
        }
        e => e.into(),
    }
}

pub async fn export(args: &ExportArgs) -> Result<u8> {
    let (_, jobs) = plan(&args.plan, args.filter.as_deref())?;
    let jobs: Vec<MirrorJob> = if args.from_target {
        jobs.iter().map(read_from_target).collect()
    } else {
        jobs
    };
    let tar = args.output.extension().is_some_and(|e| e == "tar");
    if args.split.is_some() && !tar {
        return Err(BadInput("--split cuts a tar: give --output FILE.tar".into()).into());
    }
    let bundle = Export::start(&args.output, args.since.as_deref(), args.split)
        .await
        .map_err(bad)?;
    let mut registry = args.registry.clone();
    registry.insecure_registries.push(bundle.host().to_owned());
    let engine = registry_client::engine(&registry, &args.transfer)?
        .with_attachments(args.attach.options())
        .with_trust(args.attach.trust()?)
        .with_platforms(args.plan.platforms.platforms.clone());
    let into: Vec<MirrorJob> = jobs
        .iter()
        .map(|j| bundle.job(j))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    let mirrored = mirror(
        args.plan.images_list(),
        &args.progress,
        &args.metrics,
        engine,
        &into,
        args.workers,
    )
    .await?;
    write_report(args.report.as_deref(), &mirrored)?;
    let exported = bundle.finish(&mirrored.events).map_err(bad)?;
    let mut line = format!(
        "bundle: {} images, {} blobs ({} bytes) in {}",
        exported.images,
        exported.blobs,
        exported.bytes,
        exported.path.display()
    );
    if let Some(size) = args.split {
        line.push_str(&format!(
            " (in parts of at most {size} bytes, .000 on, checked by SHA256SUMS)"
        ));
    }
    if exported.in_base > 0 {
        line.push_str(&format!(
            ", {} blobs left to the bundle it follows",
            exported.in_base
        ));
    }
    outln!("{line}");
    Ok(report(
        &mirrored,
        &Reporting {
            json: false,
            images_list: args.plan.images_list(),
            fail_on_drift: false,
            rules_failed: 0,
        },
    ))
}

/// `job` reading its image from its (listed) target, the mirror this tool keeps.
fn read_from_target(job: &MirrorJob) -> MirrorJob {
    let mut from = job.clone();
    from.source = job
        .listed_target
        .clone()
        .unwrap_or_else(|| job.target.clone());
    from
}

pub async fn import(args: &ImportArgs) -> Result<u8> {
    let started = chrono::Utc::now();
    let notifier = crate::notifications::notifier(&args.notify, "import")?;
    let bundle = Import::start(&args.input, args.repository.as_deref())
        .await
        .map_err(bad)?;
    let jobs = bundle
        .jobs(&args.dest_registry, args.dest_org.as_deref())
        .map_err(bad)?;
    let drift =
        registry_client::drift_policy(args.drift.on_drift, args.drift.backup_tag.as_deref())?;
    let mut registry = args.registry.clone();
    registry.insecure_registries.push(bundle.host().to_owned());
    let engine = registry_client::engine(&registry, &args.transfer)?
        .with_drift(drift)
        .with_attachments(args.attach.options())
        .with_trust(args.attach.trust()?)
        .with_on_sparse_refused(args.sparse.policy())
        .with_policy_hook(args.policy.hook())
        .with_attester(args.attach.attester()?);
    match bundle.check_complete(&engine, &jobs).await {
        Ok(()) => {}
        Err(e @ BundleError::Missing { .. }) => {
            say(Level::Error, "incomplete", format!("error: {e}"));
            return Ok(FAILED);
        }
        Err(e) => return Err(bad(e)),
    }
    let images_list = args.input.join("images-list");
    let mirrored = mirror(
        &images_list,
        &args.progress,
        &args.metrics,
        engine,
        &jobs,
        args.workers,
    )
    .await?;
    write_report(args.report.as_deref(), &mirrored)?;
    let status = report(
        &mirrored,
        &Reporting {
            json: args.output.json(),
            images_list: &images_list,
            fail_on_drift: false,
            rules_failed: 0,
        },
    );
    let cache_dir = args.transfer.cache_dir.as_deref();
    crate::notifications::mirrored(&notifier, cache_dir, "import", started, &mirrored, status)
        .await;
    Ok(status)
}

/// The jobs in this process (never over a broker: the bundle's registry is on its loopback).
async fn mirror(
    images_list: &std::path::Path,
    progress: &ProgressFlags,
    metrics: &crate::args::MetricsFlag,
    engine: image_mirror_worker::CopyEngine,
    jobs: &[MirrorJob],
    workers: u16,
) -> Result<Mirrored> {
    let flags = PipelineFlags {
        broker: None,
        metrics,
        images_list,
        display: Setup {
            jobs: jobs.iter().map(|j| j.targets().len()).sum(),
            interval: progress.progress_interval,
            job_lines: true,
        },
    };
    pipeline::mirror(&flags, engine, jobs, workers).await
}

fn write_report(path: Option<&std::path::Path>, mirrored: &Mirrored) -> Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_vec_pretty(&mirrored.events).context("serialising the report")?;
        image_mirror_common::atomic_file::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub async fn serve(args: &ServeArgs) -> Result<u8> {
    let layout = Layout::open(&args.input).map_err(|e| BadInput(e.to_string()))?;
    let catalog = Catalog::of_layout(&layout, args.repository.as_deref())
        .map_err(|e| BadInput(e.to_string()))?;
    let images: usize = catalog
        .tags
        .values()
        .map(std::collections::BTreeMap::len)
        .sum();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("--addr {}", args.addr))?;
    let (addr, task) = image_mirror_layout::serve(Bundle::read_only(layout, catalog), listener)?;
    outln!(
        "serving {} at http://{addr}/v2/ (read-only): {images} tagged images; Ctrl-C stops",
        args.input.display()
    );
    let _ = stop::requested().await;
    task.abort();
    Ok(OK)
}
