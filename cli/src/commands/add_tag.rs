//! `image-mirror add-tag --images A,B --tags T1,T2` (or IMAGES and TAGS) and `image-mirror
//! add-image SOURCE:TAG,…` (or FULL_IMAGES): every line is checked (the producer's rules);
//! any failure is named and nothing changes, exit 1. Then, with --amqp-url, jobs to be
//! recorded are published for the workers and the committer; without, they are mirrored here
//! and recorded in the local images-list.

use anyhow::Result;
use image_mirror_common::{Entry, ImageRef, ImagesList, Repository, Requester, Tag};
use image_mirror_producer::add_tag::{plan_add_image, plan_add_tag};
use image_mirror_producer::publish;
use image_mirror_producer::{NewImages, TargetRepos};

use crate::args::{AddFlags, HereFlags, HubFlag, ImagesToAdd, TagsToAdd};
use crate::broker::Patience;
use crate::console::{say, Level};
use crate::exit::{BadInput, FAILED};
use crate::outln;
use crate::pipeline::PipelineFlags;
use crate::planning::overrides;
use crate::progress::Setup;
use crate::run_report::{report, Reporting};
use crate::{broker, pipeline, registry_client};

/// Adds `what`: mirrored here with `here` (`add-tag`), or published (with --amqp-url, and
/// always for `producer add-tag`, which has no `here`).
pub async fn run(what: &TagsToAdd, flags: &AddFlags, here: Option<&HereFlags>) -> Result<u8> {
    let to = destination("add-tag", flags, here)?;
    let list = ImagesList::load(flags.plan.images_list()).map_err(|e| BadInput(e.to_string()))?;
    let images = parse_all::<Repository>("IMAGES", &what.images)?;
    let tags = parse_all::<Tag>("TAGS", &what.tags)?;
    let registry = registry_client::client(&flags.registry, None)?;
    let planned = plan_add_tag(&list, &images, &tags, &registry).await;
    add(flags, to, "add-tag", planned).await
}

/// `image-mirror add-image SOURCE:TAG,…` (or FULL_IMAGES): new images, each to its derived
/// `mirrored-` target (or the mapping images-list already has for its source), checked, then
/// mirrored and recorded, or published.
pub async fn run_add_image(
    what: &ImagesToAdd,
    hub: &HubFlag,
    flags: &AddFlags,
    here: Option<&HereFlags>,
) -> Result<u8> {
    let to = destination("add-image", flags, here)?;
    let list = ImagesList::load(flags.plan.images_list()).map_err(|e| BadInput(e.to_string()))?;
    let images = parse_all::<ImageRef>("FULL_IMAGES", &what.images)?;
    let rule = NewImages::for_list(&list, what.target_org.as_deref()).ok_or_else(|| {
        BadInput(
            "images-list names no target yet: say where new images go with --target-org".into(),
        )
    })?;
    let registry = registry_client::client(&flags.registry, None)?;
    let hub = registry_client::hub(hub, &registry)?;
    let repos = TargetRepos {
        registry: &registry,
        hub: &hub,
        overrides: &overrides(&flags.plan)?,
    };
    let planned = plan_add_image(&list, &images, &rule, &repos).await;
    add(flags, to, "add-image", planned).await
}

/// Mirrors and records the planned lines, or publishes their jobs for the committer; with
/// problems, names each and changes nothing.
async fn add(
    flags: &AddFlags,
    to: AddTo<'_>,
    command: &str,
    planned: Result<Vec<Entry>, Vec<String>>,
) -> Result<u8> {
    let entries = match planned {
        Ok(e) => e,
        Err(problems) => {
            for p in &problems {
                say(Level::Error, "refused", format!("{command}: {p}"));
            }
            say(
                Level::Error,
                "refused",
                format!("{command}: nothing was added"),
            );
            return Ok(FAILED);
        }
    };
    let jobs = overrides(&flags.plan)?
        .jobs_for(&entries, true, &Requester::AddTag)
        .map_err(|e| BadInput(format!("target override: {e}")))?;
    let here = match to {
        AddTo::Here(here) => here,
        AddTo::Broker => {
            let broker = broker::rabbitmq(&flags.broker, "add-tag", Patience::Once).await?;
            let published = publish(&broker, &jobs).await?;
            for e in &entries {
                outln!("queued {}", e.line());
            }
            outln!(
                "{command}: {} jobs published to {}; the committer records them once mirrored",
                published,
                broker.topology().jobs()
            );
            return Ok(crate::exit::OK);
        }
    };
    let engine = registry_client::engine(&flags.registry, &here.transfer)?
        .with_platforms(flags.plan.platforms.platforms.clone())
        .with_on_sparse_refused(here.sparse.policy());
    let pipeline = PipelineFlags {
        broker: Some(&flags.broker),
        metrics: &here.metrics,
        images_list: flags.plan.images_list(),
        display: Setup {
            jobs: jobs.iter().map(|j| j.targets().len()).sum(),
            interval: here.progress.progress_interval,
            job_lines: true,
        },
    };
    let mirrored = pipeline::mirror(&pipeline, engine, &jobs, here.workers).await?;
    Ok(report(
        &mirrored,
        &Reporting {
            json: false,
            images_list: flags.plan.images_list(),
            fail_on_drift: false,
            rules_failed: 0,
        },
    ))
}

/// Where added lines go.
enum AddTo<'a> {
    /// Mirrored and recorded in this process.
    Here(&'a HereFlags),
    /// Published for the fleet, recorded by its committer.
    Broker,
}

/// Published when a broker is named, else mirrored here; `producer add-tag` and `producer
/// add-image` have no `here`, so they need --amqp-url, checked before any work.
fn destination<'a>(
    command: &str,
    flags: &AddFlags,
    here: Option<&'a HereFlags>,
) -> Result<AddTo<'a>> {
    match (flags.broker.amqp_url.is_some(), here) {
        (true, _) => Ok(AddTo::Broker),
        (false, Some(here)) => Ok(AddTo::Here(here)),
        (false, None) => {
            Err(BadInput(format!("producer {command} needs --amqp-url (or AMQP_URL)")).into())
        }
    }
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
