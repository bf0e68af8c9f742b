//! `image-mirror add-tag --images A,B --tags T1,T2` (or IMAGES and TAGS): every image x tag
//! is checked (the image is in images-list with one target, the tag is not listed for it,
//! exact match, and exists at the source); any failure is named and nothing changes, exit 1.
//! Then, with --amqp-url, jobs to be recorded are published for the workers and the
//! committer; without, they are mirrored here and recorded in the local images-list.

use anyhow::Result;
use image_mirror_common::queue::Message;
use image_mirror_common::{ImagesList, Origin, Repository, Tag};
use image_mirror_producer::add_tag::plan_add_tag;

use crate::args::{AddTagArgs, GlobalArgs};
use crate::commands::producer::overrides;
use crate::exit::{BadInput, FAILED};
use crate::{broker, pipeline, registry_client};

pub async fn run(global: &GlobalArgs, args: &AddTagArgs) -> Result<u8> {
    let list = ImagesList::load(&global.images_list).map_err(|e| BadInput(e.to_string()))?;
    let images = parse_all::<Repository>("IMAGES", &args.images)?;
    let tags = parse_all::<Tag>("TAGS", &args.tags)?;
    let registry = registry_client::client(global)?;
    let entries = match plan_add_tag(&list, &images, &tags, &registry).await {
        Ok(e) => e,
        Err(problems) => {
            for p in &problems {
                eprintln!("add-tag: {p}");
            }
            eprintln!("add-tag: nothing was added");
            return Ok(FAILED);
        }
    };
    let jobs = overrides(global)
        .jobs_for(&entries, true, &Origin::AddTag)
        .map_err(|e| BadInput(format!("target override: {e}")))?;
    if global.amqp_url.is_some() {
        let broker = broker::rabbitmq(global, "add-tag").await?;
        let messages: Vec<Message> = jobs.iter().map(Message::for_job).collect();
        broker.publish_jobs(&messages).await?;
        for e in &entries {
            println!("queued {}", e.line());
        }
        println!(
            "add-tag: {} jobs published to {}; the committer records them once mirrored",
            messages.len(),
            broker.topology().jobs()
        );
        return Ok(crate::exit::OK);
    }
    let engine = registry_client::engine(global)?;
    let Some(mirrored) = pipeline::mirror(global, engine, &jobs, args.workers).await? else {
        eprintln!("interrupted: nothing recorded");
        return Ok(FAILED);
    };
    pipeline::record(global, &mirrored.events)?;
    Ok(pipeline::summary(&mirrored.events, mirrored.elapsed))
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
