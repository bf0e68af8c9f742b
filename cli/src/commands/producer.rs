//! `image-mirror producer sync [--missing] [--every DURATION]`: publish one job per
//! images-list entry and target (with --missing, only the targets that lack their tag); with
//! --every, again on that interval until SIGTERM/SIGINT.

use anyhow::Result;
use image_mirror_producer::{only_missing, publish, run_producer};
use image_mirror_queue::Broker;
use image_mirror_registry::RegistryClient;

use crate::args::SyncArgs;
use crate::broker::Patience;
use crate::exit::{after_pass, OK};
use crate::notifications::{self, Pass};
use crate::outln;
use crate::planning::{plan, print_missing};
use crate::{broker, registry_client, serve, stop};
use image_mirror_notify::Notifier;

pub async fn sync(args: &SyncArgs) -> Result<u8> {
    let notifier = notifications::notifier(&args.notify, "producer sync")?;
    let patience = Patience::of_schedule(args.every);
    let mut stop = std::pin::pin!(stop::signal());
    let Some(broker) =
        broker::rabbitmq_unless_stopped(&args.broker, "producer sync", patience, &mut stop).await?
    else {
        return Ok(OK);
    };
    let client = if args.missing {
        Some(registry_client::client(&args.registry, None)?)
    } else {
        None
    };
    let Some(every) = args.every else {
        return told(args, &broker, client.as_ref(), &notifier).await;
    };
    if let Some(addr) = args.metrics.metrics_addr {
        serve::start(addr, Some(std::sync::Arc::clone(&broker))).await?;
    }
    run_producer(
        every,
        stop,
        || async {
            told(args, &broker, client.as_ref(), &notifier)
                .await
                .map(|_| ())
        },
        // A failed pass (images-list unreadable, broker gone) is reported; the next may
        // pass.
        after_pass("sync", every),
    )
    .await;
    Ok(OK)
}

/// One pass, told of (`--notify`) when it ends.
async fn told(
    args: &SyncArgs,
    broker: &Broker,
    client: Option<&RegistryClient>,
    notifier: &Notifier,
) -> Result<u8> {
    let started = chrono::Utc::now();
    let pass = sync_once(args, broker, client).await;
    let told = pass.as_ref().map(|published| Pass {
        published: *published,
        failures: Vec::new(),
    });
    let outcome = told.as_ref().map_err(|e| *e);
    notifications::pass_ended(notifier, None, "producer sync", started, outcome).await;
    pass.map(|_| OK)
}

/// One pass: the images-list read anew, its jobs (only the missing ones with `--missing`)
/// published with confirms.
async fn sync_once(
    args: &SyncArgs,
    broker: &Broker,
    client: Option<&RegistryClient>,
) -> Result<usize> {
    let (list, jobs) = plan(&args.plan, args.filter.as_deref())?;
    let jobs = match client {
        Some(client) => {
            let missing = only_missing(client, jobs).await;
            print_missing(&missing);
            missing.jobs
        }
        None => jobs,
    };
    let started = std::time::Instant::now();
    let published = publish(broker, &jobs).await?;
    let took = started.elapsed().as_secs_f64();
    let targets: usize = jobs.iter().map(|j| j.targets().len()).sum();
    let each = if targets == jobs.len() {
        String::new()
    } else {
        format!(" ({targets} targets)")
    };
    outln!(
        "published {} jobs for {} entries{each} to {} in {took:.2}s ({:.0} jobs/s, confirmed)",
        published,
        list.len(),
        broker.topology().jobs(),
        published as f64 / took.max(1e-9)
    );
    Ok(published)
}
