//! `image-mirror producer sync`: publish one job per images-list entry and target.

use anyhow::Result;
use image_mirror_common::queue::Message;
use image_mirror_common::{ImagesList, MirrorJob};
use image_mirror_producer::{plan_sync, TargetOverrides};
use regex::Regex;

use crate::args::{GlobalArgs, SyncArgs};
use crate::broker;
use crate::exit::{BadInput, OK};

/// The target overrides of the global flags.
pub fn overrides(global: &GlobalArgs) -> TargetOverrides {
    TargetOverrides {
        registries: global.dest_registries.clone(),
        org: global.dest_org.clone(),
    }
}

/// The images-list and one job per entry and target whose line matches `filter`; bad input
/// (the list, the regex, an override) is reported as such.
pub fn plan(global: &GlobalArgs, filter: Option<&str>) -> Result<(ImagesList, Vec<MirrorJob>)> {
    let list = ImagesList::load(&global.images_list).map_err(|e| BadInput(e.to_string()))?;
    let filter = filter
        .map(Regex::new)
        .transpose()
        .map_err(|e| BadInput(format!("--filter: {e}")))?;
    let jobs = plan_sync(&list, filter.as_ref(), &overrides(global))
        .map_err(|e| BadInput(format!("target override: {e}")))?;
    Ok((list, jobs))
}

pub async fn sync(global: &GlobalArgs, args: &SyncArgs) -> Result<u8> {
    let (list, jobs) = plan(global, args.filter.as_deref())?;
    let broker = broker::rabbitmq(global, "producer sync").await?;
    let messages: Vec<Message> = jobs.iter().map(Message::for_job).collect();
    let started = std::time::Instant::now();
    broker.publish_jobs(&messages).await?;
    let took = started.elapsed().as_secs_f64();
    let targets: usize = jobs.iter().map(|j| j.targets().len()).sum();
    let each = if targets == jobs.len() {
        String::new()
    } else {
        format!(" ({targets} targets)")
    };
    println!(
        "published {} jobs for {} entries{each} to {} in {took:.2}s ({:.0} jobs/s, confirmed)",
        messages.len(),
        list.len(),
        broker.topology().jobs(),
        messages.len() as f64 / took.max(1e-9)
    );
    Ok(OK)
}
