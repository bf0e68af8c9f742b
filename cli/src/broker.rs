//! Connecting to the broker the broker flags name: within `--amqp-connect-timeout` for a
//! command that runs once, or, for a long-running role, until it answers (a WARN line per
//! attempt, never silence).

use anyhow::{Context, Result};
use image_mirror_common::secret::{redact_url, Secret};
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::coordination::Coordinator;
use image_mirror_queue::reach::Reach;
use image_mirror_queue::topology::Topology;
use image_mirror_queue::Broker;

use crate::args::BrokerFlags;
use crate::exit::BadInput;

/// How a command waits for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Runs once: no answer within the bound is the command's error.
    Once,
    /// A long-running role: it says it waits, and tries again until the broker answers.
    Wait,
}

impl Patience {
    /// A command run on a schedule (`--every`) waits; run once, it does not.
    pub fn of_schedule(every: Option<std::time::Duration>) -> Self {
        if every.is_some() {
            Self::Wait
        } else {
            Self::Once
        }
    }
}

/// [`rabbitmq`], or nothing when `stop` comes first (a role stopped while it waited).
pub async fn rabbitmq_unless_stopped(
    flags: &BrokerFlags,
    command: &str,
    patience: Patience,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Option<std::sync::Arc<Broker>>> {
    tokio::select! {
        b = rabbitmq(flags, command, patience) => Ok(Some(std::sync::Arc::new(b?))),
        () = stop.as_mut() => Ok(None),
    }
}

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
pub async fn rabbitmq(flags: &BrokerFlags, command: &str, patience: Patience) -> Result<Broker> {
    let url = flags
        .amqp_url
        .as_ref()
        .map(Secret::expose)
        .ok_or_else(|| BadInput(format!("{command} needs --amqp-url (or AMQP_URL)")))?;
    let reach = Reach {
        timeout: flags.amqp_connect_timeout,
        wait: patience == Patience::Wait,
    };
    let broker = AmqpBroker::reach(url, topology(flags), reach)
        .await
        .context("the broker cannot be reached")?;
    Ok(Broker::Amqp(Box::new(broker)))
}
