//! `image-mirror add-tag --images A,B --tags T1,T2` (or IMAGES and TAGS) and `image-mirror
//! add-image SOURCE:TAG,…` (or FULL_IMAGES): every line is checked (the producer's rules);
//! any failure is named and nothing changes, exit 1. Then, with --amqp-url, jobs to be
//! recorded are published for the workers and the committer; without, they are mirrored here
//! and recorded in the local images-list.

use anyhow::Result;
use image_mirror_common::{Entry, ImageRef, ImagesList, Origin, Repository, Tag};
use image_mirror_producer::add_tag::{plan_add_image, plan_add_tag};
use image_mirror_producer::publish;
use image_mirror_producer::{NewImages, TargetRepos};

use crate::args::{AddFlags, AddImageArgs, AddTagArgs};
use crate::exit::{BadInput, FAILED};
use crate::pipeline::PipelineFlags;
use crate::planning::overrides;
use crate::{broker, pipeline, registry_client};

pub async fn run(args: &AddTagArgs) -> Result<u8> {
    let flags = &args.add;
    let list = ImagesList::load(flags.plan.images_list()).map_err(|e| BadInput(e.to_string()))?;
    let images = parse_all::<Repository>("IMAGES", &args.images)?;
    let tags = parse_all::<Tag>("TAGS", &args.tags)?;
    let registry = registry_client::client(&flags.registry, None)?;
    let planned = plan_add_tag(&list, &images, &tags, &registry).await;
    add(flags, "add-tag", planned).await
}

/// `image-mirror add-image SOURCE:TAG,…` (or FULL_IMAGES): new images, each to its derived
/// `mirrored-` target (or the mapping images-list already has for its source), checked, then
/// mirrored and recorded, or published.
pub async fn run_add_image(args: &AddImageArgs) -> Result<u8> {
    let flags = &args.add;
    let list = ImagesList::load(flags.plan.images_list()).map_err(|e| BadInput(e.to_string()))?;
    let images = parse_all::<ImageRef>("FULL_IMAGES", &args.images)?;
    let rule = NewImages::for_list(&list, args.target_org.as_deref()).ok_or_else(|| {
        BadInput(
            "images-list names no target yet: say where new images go with --target-org".into(),
        )
    })?;
    let registry = registry_client::client(&flags.registry, None)?;
    let hub = registry_client::hub(&args.hub, &registry)?;
    let repos = TargetRepos {
        registry: &registry,
        hub: &hub,
        overrides: &overrides(&flags.plan)?,
    };
    let planned = plan_add_image(&list, &images, &rule, &repos).await;
    add(flags, "add-image", planned).await
}

/// Mirrors and records the planned lines, or publishes their jobs for the committer; with
/// problems, names each and changes nothing.
async fn add(
    flags: &AddFlags,
    command: &str,
    planned: Result<Vec<Entry>, Vec<String>>,
) -> Result<u8> {
    let entries = match planned {
        Ok(e) => e,
        Err(problems) => {
            for p in &problems {
                eprintln!("{command}: {p}");
            }
            eprintln!("{command}: nothing was added");
            return Ok(FAILED);
        }
    };
    let jobs = overrides(&flags.plan)?
        .jobs_for(&entries, true, &Origin::AddTag)
        .map_err(|e| BadInput(format!("target override: {e}")))?;
    if flags.broker.amqp_url.is_some() {
        let broker = broker::rabbitmq(&flags.broker, "add-tag").await?;
        let published = publish(&broker, &jobs).await?;
        for e in &entries {
            println!("queued {}", e.line());
        }
        println!(
            "{command}: {} jobs published to {}; the committer records them once mirrored",
            published,
            broker.topology().jobs()
        );
        return Ok(crate::exit::OK);
    }
    let engine = registry_client::engine(&flags.registry, &flags.transfer)?;
    let here = PipelineFlags {
        broker: &flags.broker,
        metrics: &flags.metrics,
        images_list: flags.plan.images_list(),
    };
    let Some(mirrored) = pipeline::mirror(&here, engine, &jobs, flags.workers).await? else {
        eprintln!("interrupted: nothing recorded");
        return Ok(FAILED);
    };
    pipeline::record(flags.plan.images_list(), &mirrored);
    Ok(pipeline::summary(&mirrored, false))
}

/// Parses every non-empty item, naming the variable and the item that is wrong.
fn parse_all<T: std::str::FromStr>(what: &str, items: &[String]) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    let mut out = Vec::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        out.push(
            item.parse::<T>()
                .map_err(|e| BadInput(format!("{what}: {item:?}: {e}")))?,
        );
    }
    if out.is_empty() {
        return Err(BadInput(format!("{what} is empty")).into());
    }
    Ok(out)
}
