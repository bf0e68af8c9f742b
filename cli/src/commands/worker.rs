//! `image-mirror worker`: consume jobs, copy, publish events, until stopped.

use std::sync::Arc;

use anyhow::Result;
use image_mirror_worker::{run_worker, Deferral, WorkerOptions};

use crate::args::WorkerArgs;
use crate::broker::Patience;
use crate::exit::OK;
use crate::{broker, registry_client, serve, stop};

pub async fn run(args: &WorkerArgs) -> Result<u8> {
    let notifier = crate::notifications::notifier(&args.notify, "worker")?;
    let mut stop = std::pin::pin!(stop::signal());
    let Some(broker) =
        broker::rabbitmq_unless_stopped(&args.broker, "worker", Patience::Wait, &mut stop).await?
    else {
        return Ok(OK);
    };
    if let Some(addr) = args.metrics.metrics_addr {
        serve::start(addr, Some(Arc::clone(&broker))).await?;
    }
    let drift =
        registry_client::drift_policy(args.drift.on_drift, args.drift.backup_tag.as_deref())?;
    let mut engine = registry_client::engine(&args.registry, &args.transfer)?
        .with_drift(drift)
        .with_attachments(args.attach.options())
        .with_trust(args.attach.trust()?)
        .with_platforms(args.platforms.platforms.clone())
        .with_on_sparse_refused(args.sparse.policy())
        .with_policy_hook(args.policy.hook())
        .with_attester(args.attach.attester()?);
    if args.fleet == "on" {
        let coordinator = broker::coordinator(&args.broker).await?;
        engine = engine.join_fleet(coordinator).await?;
        share_bandwidth(&broker, engine.client().bandwidth());
    }
    let options = WorkerOptions {
        concurrency: args.concurrency.max(1),
        grace: args.grace,
        retry_unreachable: true,
        deferral: Deferral::DelayQueue,
        notifier: (!notifier.is_empty()).then_some(notifier),
    };
    tracing::info!(concurrency = options.concurrency, queue = %broker.topology().jobs(), fleet = %args.fleet, "worker started");
    let handled = run_worker(broker, engine, options, stop).await?;
    tracing::info!(handled, "worker stopped");
    Ok(OK)
}

/// A fleet's cap is the fleet's: while the worker runs, its share of it is agreed with the
/// other workers over the broker (`fleet_bandwidth.rs`), again after a broken connection.
fn share_bandwidth(
    broker: &Arc<image_mirror_queue::Broker>,
    bandwidth: &Arc<image_mirror_registry::bandwidth::Bandwidth>,
) {
    if !bandwidth.is_capped() {
        return;
    }
    let (broker, bandwidth) = (Arc::clone(broker), Arc::clone(bandwidth));
    let cap = bandwidth
        .caps()
        .iter()
        .find(|c| c.host.is_none())
        .map_or(0, |c| c.rate.bytes_per_second());
    let me = format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_default(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    tokio::spawn(async move {
        let image_mirror_queue::Broker::Amqp(amqp) = &*broker else {
            return;
        };
        loop {
            let shared = image_mirror_queue::fleet_bandwidth::share_bandwidth(
                amqp,
                &me,
                cap,
                || bandwidth.take_moved(),
                |share| bandwidth.set_share(share),
            )
            .await;
            if let Err(e) = shared {
                tracing::debug!(error = %e, "sharing the bandwidth cap again in a second");
            }
            tokio::time::sleep(image_mirror_queue::fleet_bandwidth::HEARTBEAT).await;
        }
    });
}
