//! `image-mirror producer discover [--every DURATION] [KEY...]`: publish one job, to be
//! recorded, per new tag; one key's failure does not stop the others; a summary at the end;
//! with --every, again on that interval until SIGTERM/SIGINT.

use anyhow::Result;
use image_mirror_producer::{publish, run_producer};

use crate::args::{DiscoverArgs, GlobalArgs};
use crate::discovery::{discover_keys, print_key_lines};
use crate::exit::{FAILED, OK};
use crate::{broker, serve, stop};

pub async fn run(global: &GlobalArgs, args: &DiscoverArgs) -> Result<u8> {
    let broker = std::sync::Arc::new(broker::rabbitmq(global, "producer discover").await?);
    let Some(every) = args.every else {
        return once(global, args, &broker).await;
    };
    if let Some(addr) = global.metrics_addr {
        serve::start(addr, Some(std::sync::Arc::clone(&broker))).await?;
    }
    run_producer(
        every,
        stop::signal(),
        || async { once(global, args, &broker).await.map(|_| ()) },
        |outcome| {
            if let Err(e) = outcome {
                // A failed pass (config unreadable, broker gone) is reported; the next may
                // pass.
                for line in format!("{e:#}").lines() {
                    eprintln!("error: {line}");
                }
            }
            println!("next discovery in {}s", every.as_secs());
        },
    )
    .await;
    Ok(OK)
}

async fn once(
    global: &GlobalArgs,
    args: &DiscoverArgs,
    broker: &image_mirror_queue::Broker,
) -> Result<u8> {
    let found = discover_keys(global, &args.keys).await?;
    print_key_lines(&found.reports);
    let jobs = found.jobs(global)?;
    let published = publish(broker, &jobs).await?;
    let failed = found
        .reports
        .iter()
        .filter(|r| !r.errors.is_empty())
        .count();
    let unsupported = found
        .reports
        .iter()
        .filter(|r| r.unsupported.is_some())
        .count();
    println!(
        "discover: {} keys, {} new tags published to {}, {failed} keys failed, {unsupported} unsupported",
        found.reports.len(),
        published,
        broker.topology().jobs()
    );
    Ok(if failed == 0 { OK } else { FAILED })
}
