//! `image-mirror producer sync`: publish one job per images-list entry and target.

use anyhow::Result;
use image_mirror_common::queue::Message;
use image_mirror_common::ImagesList;
use image_mirror_producer::{plan_sync, TargetOverrides};
use regex::Regex;

use crate::args::{GlobalArgs, SyncArgs};
use crate::broker;
use crate::exit::{BadInput, OK};

pub fn overrides(global: &GlobalArgs) -> TargetOverrides {
    TargetOverrides {
        registries: global.dest_registries.clone(),
        org: global.dest_org.clone(),
    }
}

pub async fn sync(global: &GlobalArgs, args: &SyncArgs) -> Result<u8> {
    let list = ImagesList::load(&global.images_list).map_err(|e| BadInput(e.to_string()))?;
    let filter = args
        .filter
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| BadInput(format!("--filter: {e}")))?;
    let jobs = plan_sync(&list, filter.as_ref(), &overrides(global))
        .map_err(|e| BadInput(format!("target override: {e}")))?;
    let broker = broker::rabbitmq(global, "producer sync").await?;
    let messages: Vec<Message> = jobs.iter().map(Message::for_job).collect();
    broker.publish_jobs(&messages).await?;
    println!(
        "published {} jobs for {} entries to {}",
        messages.len(),
        list.len(),
        broker.topology().jobs()
    );
    Ok(OK)
}
