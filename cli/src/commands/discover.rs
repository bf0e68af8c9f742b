//! `image-mirror producer discover [--every DURATION] [KEY...]`: publish one job, to be
//! recorded, per new tag; one key's failure does not stop the others; a summary at the end;
//! with --every, again on that interval until SIGTERM/SIGINT.

use anyhow::Result;
use image_mirror_producer::{publish, run_producer};

use crate::args::DiscoverArgs;
use crate::broker::Patience;
use crate::discovery::{discover_keys, print_key_lines, Discovering};
use crate::exit::{after_pass, FAILED, OK};
use crate::notifications::{self, Pass};
use crate::outln;
use crate::{broker, serve, stop};
use image_mirror_notify::{JobProblem, Notifier};

pub async fn run(args: &DiscoverArgs) -> Result<u8> {
    let notifier = notifications::notifier(&args.notify, "producer discover")?;
    let patience = Patience::of_schedule(args.every);
    let mut stop = std::pin::pin!(stop::signal());
    let Some(broker) =
        broker::rabbitmq_unless_stopped(&args.broker, "producer discover", patience, &mut stop)
            .await?
    else {
        return Ok(OK);
    };
    let Some(every) = args.every else {
        return told(args, &broker, &notifier).await;
    };
    if let Some(addr) = args.metrics.metrics_addr {
        serve::start(addr, Some(std::sync::Arc::clone(&broker))).await?;
    }
    run_producer(
        every,
        stop,
        || async { told(args, &broker, &notifier).await.map(|_| ()) },
        // A failed pass (config unreadable, broker gone) is reported; the next may pass.
        after_pass("discovery", every),
    )
    .await;
    Ok(OK)
}

/// One pass, told of (`--notify`) when it ends.
async fn told(
    args: &DiscoverArgs,
    broker: &image_mirror_queue::Broker,
    notifier: &Notifier,
) -> Result<u8> {
    let started = chrono::Utc::now();
    let pass = once(args, broker).await;
    let outcome = pass.as_ref().map(|(_, p)| p);
    notifications::pass_ended(notifier, None, "producer discover", started, outcome).await;
    pass.map(|(status, _)| status)
}

async fn once(args: &DiscoverArgs, broker: &image_mirror_queue::Broker) -> Result<(u8, Pass)> {
    let flags = Discovering {
        plan: &args.plan,
        registry: &args.registry,
        discovery: &args.discovery,
    };
    let found = discover_keys(&flags, &args.keys).await?;
    print_key_lines(&found.reports);
    let jobs = found.jobs(&args.plan)?;
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
    outln!(
        "discover: {} keys, {} new tags published to {}, {failed} keys failed, {unsupported} unsupported",
        found.reports.len(),
        published,
        broker.topology().jobs()
    );
    let failures = found
        .reports
        .iter()
        .filter(|r| !r.errors.is_empty())
        .map(|r| JobProblem {
            job: format!("config.json key {}", r.key),
            class: "discovery".into(),
            message: r.errors.join("; "),
        })
        .collect();
    let status = if failed == 0 { OK } else { FAILED };
    Ok((
        status,
        Pass {
            published,
            failures,
        },
    ))
}
