//! The queue port. This crate owns what producer, workers and committer need from a message
//! broker, and its two adapters of the same semantics: RabbitMQ ([`amqp`], through lapin, topology in
//! [`topology`]) and in-process ([`memory`], for the monolithic mode and tests).
//!
//! Semantics both keep: a publish returns once the message is safely queued (publisher
//! confirms, unroutable is an error); a consumer gets at most `prefetch` unacknowledged
//! deliveries; a delivery is acknowledged explicitly, and one never acknowledged comes again;
//! a transient failure goes back after a growing delay with its attempt count; a permanent one
//! goes to the dead-letter queue with its reason.
//!
//! Apart from the port, [`coordination`] gives a fleet of workers RabbitMQ's means to act as
//! one: blob leases, upload checkpoints, and ([`locations`]) shared blob locations.

pub mod amqp;
pub mod coordination;
pub mod fleet_bandwidth;
pub mod job_retries;
pub mod locations;
pub mod memory;
mod nodes;
pub mod reach;
pub mod topology;
pub mod trace_context;

use std::collections::BTreeMap;
use std::time::Duration;

/// Message headers (trace context, attempt, reason).
pub type Headers = BTreeMap<String, String>;

pub use job_retries::{JobRetries, JobRetriesError};

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message id (a job's deterministic id).
    pub id: String,
    /// JSON body.
    pub body: Vec<u8>,
    /// Headers.
    pub headers: Headers,
}

/// Why the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker could not be reached or the connection broke.
    #[error("broker: {0}")]
    Broker(String),
    /// The broker refused a message (nack) or could not route it.
    #[error("broker refused the message: {0}")]
    Refused(String),
    /// The queue is closed (the process is shutting down).
    #[error("the queue is closed")]
    Closed,
}

/// Depth of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Queue name.
    pub name: String,
    /// Messages ready for delivery.
    pub ready: u64,
    /// Consumers attached.
    pub consumers: u64,
}

/// A received message: read it, then [`ack`](Delivery::ack) it.
pub struct Delivery {
    /// The message id.
    pub id: String,
    /// The body.
    pub body: Vec<u8>,
    /// The headers.
    pub headers: Headers,
    /// Whether the broker delivered it before (to a consumer that did not acknowledge it).
    pub redelivered: bool,
    acker: Acker,
}

enum Acker {
    Amqp(lapin::Acker),
    Memory(memory::MemoryAcker),
}

impl Delivery {
    /// The attempt this delivery is (1 for the first), from its header.
    pub fn attempt(&self) -> u32 {
        self.headers
            .get(topology::ATTEMPT_HEADER)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1)
    }

    /// Acknowledges the delivery: it will not come again.
    pub async fn ack(self) -> Result<(), QueueError> {
        match self.acker {
            Acker::Amqp(acker) => amqp::ack(&acker).await,
            Acker::Memory(acker) => {
                acker.ack();
                Ok(())
            }
        }
    }

    /// Gives the delivery back for another consumer, at once.
    pub async fn requeue(self) -> Result<(), QueueError> {
        match self.acker {
            Acker::Amqp(acker) => amqp::requeue(&acker).await,
            Acker::Memory(acker) => {
                acker.requeue();
                Ok(())
            }
        }
    }
}

/// A broker: RabbitMQ or in-process.
pub enum Broker {
    /// RabbitMQ.
    Amqp(Box<amqp::AmqpBroker>),
    /// In this process.
    Memory(memory::MemoryBroker),
}

/// Deliveries from one queue of a [`Broker`].
pub enum Consumer {
    /// From RabbitMQ.
    Amqp(Box<amqp::AmqpConsumer>),
    /// From memory.
    Memory(memory::MemoryConsumer),
}

impl Consumer {
    /// The next delivery, `None` when the queue is closed for good.
    pub async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        match self {
            Self::Amqp(c) => c.next().await,
            Self::Memory(c) => c.next().await.map(Ok),
        }
    }
}

impl Broker {
    /// The names of the queues.
    pub fn topology(&self) -> &topology::Topology {
        match self {
            Self::Amqp(b) => b.topology(),
            Self::Memory(b) => b.topology(),
        }
    }

    /// Publishes a job to the jobs queue, confirmed.
    pub async fn publish_job(&self, message: &Message) -> Result<(), QueueError> {
        let jobs = self.topology().jobs();
        match self {
            Self::Amqp(b) => b.publish("", &jobs, message).await,
            Self::Memory(b) => b.publish(&jobs, message.clone()),
        }
    }

    /// Publishes many jobs, confirmed, several in flight at once.
    pub async fn publish_jobs(&self, messages: &[Message]) -> Result<(), QueueError> {
        let jobs = self.topology().jobs();
        match self {
            Self::Amqp(b) => b.publish_many("", &jobs, messages).await,
            Self::Memory(b) => messages
                .iter()
                .try_for_each(|m| b.publish(&jobs, m.clone())),
        }
    }

    /// Publishes an event to the events exchange with `routing_key`, confirmed; refused when
    /// no queue is bound for it.
    pub async fn publish_event(
        &self,
        routing_key: &str,
        message: &Message,
    ) -> Result<(), QueueError> {
        match self {
            Self::Amqp(b) => {
                b.publish(&b.topology().events(), routing_key, message)
                    .await
            }
            Self::Memory(b) => b.publish_event(routing_key, message.clone()),
        }
    }

    /// Schedules `message` for retry number `retry` (1-based): it comes back on the jobs
    /// queue after that retry's delay, its attempt header set to `retry + 1`.
    pub async fn publish_retry(&self, message: &Message, retry: u32) -> Result<(), QueueError> {
        let message = memory::with_attempt(message.clone(), retry + 1);
        match self {
            Self::Amqp(b) => {
                if b.topology().retries().delay(retry).is_none() {
                    return Err(QueueError::Refused(format!("no retry number {retry}")));
                }
                let queue = b
                    .topology()
                    .retry(usize::try_from(retry).unwrap_or(usize::MAX));
                b.publish("", &queue, &message).await
            }
            Self::Memory(b) => b.publish_retry(message, retry),
        }
    }

    /// Puts `message` aside until a registry's quota is expected back, `wait` from now: in the
    /// delay queue timed closest below it (RabbitMQ), or exactly (in memory). Its attempt
    /// number stays; its deferral count goes up. Returns the delay it got.
    pub async fn publish_deferred(
        &self,
        message: &Message,
        wait: Duration,
    ) -> Result<Duration, QueueError> {
        let mut message = message.clone();
        let times: u32 = message
            .headers
            .get(topology::DEFERRED_HEADER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        message.headers.insert(
            topology::DEFERRED_HEADER.to_owned(),
            (times + 1).to_string(),
        );
        match self {
            Self::Amqp(b) => {
                let retries = b.topology().retries();
                let n = retries.deferral_level(wait);
                let delay = retries.delays()[n - 1];
                let queue = b.topology().retry(n);
                b.publish("", &queue, &message).await?;
                Ok(delay)
            }
            Self::Memory(b) => {
                b.publish_after(message, wait)?;
                Ok(wait)
            }
        }
    }

    /// Sends `message` to the dead-letter queue with `reason`.
    pub async fn publish_dead(&self, message: &Message, reason: &str) -> Result<(), QueueError> {
        let dead = self.topology().dead();
        self.publish_with_reason(&dead, message, reason).await
    }

    /// Sends an event nobody can read to the events' dead-letter queue with `reason`.
    pub async fn publish_dead_event(
        &self,
        message: &Message,
        reason: &str,
    ) -> Result<(), QueueError> {
        let dead = self.topology().events_dead();
        self.publish_with_reason(&dead, message, reason).await
    }

    async fn publish_with_reason(
        &self,
        queue: &str,
        message: &Message,
        reason: &str,
    ) -> Result<(), QueueError> {
        let mut message = message.clone();
        message
            .headers
            .insert(topology::REASON_HEADER.to_owned(), reason.to_owned());
        match self {
            Self::Amqp(b) => b.publish("", queue, &message).await,
            Self::Memory(b) => b.publish(queue, message),
        }
    }

    /// Consumes `queue` with at most `prefetch` unacknowledged deliveries.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, QueueError> {
        match self {
            Self::Amqp(b) => Ok(Consumer::Amqp(Box::new(b.consume(queue, prefetch).await?))),
            Self::Memory(b) => Ok(Consumer::Memory(b.consume(queue, prefetch))),
        }
    }

    /// Whether the broker can be reached now (always, for the in-memory one).
    pub fn is_connected(&self) -> bool {
        match self {
            Self::Amqp(b) => b.is_connected(),
            Self::Memory(_) => true,
        }
    }

    /// Depth of every queue.
    pub async fn depths(&self) -> Result<Vec<QueueDepth>, QueueError> {
        match self {
            Self::Amqp(b) => b.depths().await,
            Self::Memory(b) => Ok(b.depths()),
        }
    }
}

impl Delivery {
    /// The delivery as a message to publish again (retry, dead letter).
    pub fn to_message(&self) -> Message {
        Message {
            id: self.id.clone(),
            body: self.body.clone(),
            headers: self.headers.clone(),
        }
    }
}
