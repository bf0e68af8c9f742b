//! Connecting to the broker the broker flags name.

use anyhow::{Context, Result};
use image_mirror_common::secret::{redact_url, Secret};
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::coordination::Coordinator;
use image_mirror_queue::topology::Topology;
use image_mirror_queue::Broker;

use crate::args::BrokerFlags;
use crate::exit::BadInput;

/// The fleet's coordination through RabbitMQ at `--amqp-url` (a connection of its own).
pub async fn coordinator(flags: &BrokerFlags) -> Result<Coordinator> {
    let url = flags
        .amqp_url
        .as_ref()
        .map(Secret::expose)
        .ok_or_else(|| BadInput("the fleet needs --amqp-url (or AMQP_URL)".into()))?;
    Coordinator::connect(url, topology(flags))
        .await
        .with_context(|| format!("connecting to {}", redact_url(url)))
}

/// The names under `--queue-prefix`, with the delay queues of `--retry-delays`.
fn topology(flags: &BrokerFlags) -> Topology {
    let topology = Topology::new(&flags.queue_prefix);
    match &flags.retry_delays {
        Some(retries) => topology.with_retries(retries.clone()),
        None => topology,
    }
}

/// RabbitMQ at `--amqp-url`, with the topology declared; bad usage when no URL is given.
pub async fn rabbitmq(flags: &BrokerFlags, command: &str) -> Result<Broker> {
    let url = flags
        .amqp_url
        .as_ref()
        .map(Secret::expose)
        .ok_or_else(|| BadInput(format!("{command} needs --amqp-url (or AMQP_URL)")))?;
    let broker = AmqpBroker::connect(url, topology(flags))
        .await
        .with_context(|| format!("connecting to {}", redact_url(url)))?;
    Ok(Broker::Amqp(Box::new(broker)))
}
