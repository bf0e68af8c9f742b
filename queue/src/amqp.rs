//! The RabbitMQ adapter (lapin): declares the topology of [`topology`], publishes with
//! confirms (`mandatory`, so an unroutable message is an error, as is a nack), consumes with a
//! prefetch and manual acks, and rides out broker restarts with lapin's automatic recovery.
//! Acks from before a recovery are stale: those deliveries come again, so every consumer step
//! must be idempotent.

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use futures_util::StreamExt;

use std::time::Duration;

use image_mirror_common::retry::RetryPolicy;

use crate::nodes::Nodes;
use crate::reach::Reach;
use crate::topology::Topology;
use crate::{Acker, Delivery, Headers, Message, QueueDepth, QueueError};

/// The pauses between reconnections after a broker restart: 0.5 s doubling to 10 s, 32 times
/// (about five minutes).
pub const RECONNECT: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(500), Duration::from_secs(10), 32);

/// The pauses while a channel waits for a recovering connection: 0.1 s doubling to 2 s, for
/// a minute.
const CHANNEL_WAIT: RetryPolicy = RetryPolicy::new(
    Duration::from_millis(100),
    Duration::from_secs(2),
    usize::MAX,
);

/// A connection to RabbitMQ with a confirming publish channel.
pub struct AmqpBroker {
    connection: Connection,
    publisher: Channel,
    url: String,
    topology: Topology,
}

fn broker_error(url: &str, e: &lapin::Error) -> QueueError {
    QueueError::Broker(format!("{url}: {e}"))
}

fn string_arg(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

/// The arguments of every durable quorum queue.
fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), string_arg("quorum"));
    args
}

impl AmqpBroker {
    /// Connects to `url` within the default bound ([`Reach::default`]: 10 s) and declares
    /// the topology. After a broker restart the connection is tried again for about five
    /// minutes ([`RECONNECT`]), then fails. The URL's password never appears in an error.
    pub async fn connect(url: &str, topology: Topology) -> Result<Self, QueueError> {
        Self::reach(url, topology, Reach::default()).await
    }

    /// [`connect`](Self::connect) within `reach`'s bound, or, for a role that waits, once
    /// the broker answers.
    pub async fn reach(url: &str, topology: Topology, reach: Reach) -> Result<Self, QueueError> {
        reach
            .connect(url, || Self::connect_with(url, topology.clone(), RECONNECT))
            .await
    }

    /// Connects to `url` at once (no bound of its own), with `reconnect` as the pauses
    /// between reconnections after the connection broke.
    pub async fn connect_with(
        url: &str,
        topology: Topology,
        reconnect: RetryPolicy,
    ) -> Result<Self, QueueError> {
        // No jitter: with a jittered backoff lapin 4.12.3 never comes back from its first
        // reconnection pause (found by restarting a broker under a worker).
        let reconnect = backon::ExponentialBuilder::default()
            .with_min_delay(reconnect.min_delay)
            .with_max_delay(reconnect.max_delay)
            .with_max_times(reconnect.max_retries);
        let nodes = Nodes::parse(url)?;
        let shown = nodes.shown();
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(b"image-mirror".to_vec()))
            .with_backoff(reconnect)
            .enable_auto_recover();
        let connection = nodes
            .connect(properties)
            .await
            .map_err(|e| broker_error(&shown, &e))?;
        let publisher = connection
            .create_channel()
            .await
            .map_err(|e| broker_error(&shown, &e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| broker_error(&shown, &e))?;
        let broker = Self {
            connection,
            publisher,
            url: shown,
            topology,
        };
        broker.declare().await?;
        Ok(broker)
    }

    /// The names this broker uses.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    async fn declare(&self) -> Result<(), QueueError> {
        let ch = &self.publisher;
        let err = |e: lapin::Error| broker_error(&self.url, &e);
        let durable = QueueDeclareOptions::durable();
        let t = &self.topology;
        for queue in [t.jobs(), t.dead(), t.committer(), t.events_dead()] {
            ch.queue_declare(queue.as_str().into(), durable, quorum())
                .await
                .map_err(err)?;
        }
        for (i, delay) in t.retries().delays().iter().enumerate() {
            // Quorum too (replicated), its expired jobs dead-lettered back to the jobs queue
            // at least once (a node down at that moment loses none: they wait).
            let mut args = quorum();
            args.insert(
                ShortString::from("x-dead-letter-strategy"),
                string_arg("at-least-once"),
            );
            args.insert(
                ShortString::from("x-overflow"),
                string_arg("reject-publish"),
            );
            args.insert(
                ShortString::from("x-message-ttl"),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            args.insert(ShortString::from("x-dead-letter-exchange"), string_arg(""));
            args.insert(
                ShortString::from("x-dead-letter-routing-key"),
                string_arg(&t.jobs()),
            );
            ch.queue_declare(t.retry(i + 1).as_str().into(), durable, args)
                .await
                .map_err(|e| match precondition_failed(&e) {
                    true => QueueError::Broker(format!(
                        "{}: the delay queue {} exists with other arguments ({e}): other \
                         --retry-delays on the same --queue-prefix, or a classic queue from \
                         an earlier version; once it is empty, delete it (rabbitmqctl \
                         delete_queue {}) and start again",
                        self.url,
                        t.retry(i + 1),
                        t.retry(i + 1)
                    )),
                    false => err(e),
                })?;
        }
        ch.exchange_declare(
            t.events().as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        ch.queue_bind(
            t.committer().as_str().into(),
            t.events().as_str().into(),
            "job.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    /// Publishes `message` to `exchange` with `routing_key` and waits for the broker's confirm.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Result<(), QueueError> {
        let mut recovered = false;
        loop {
            match self.publish_once(exchange, routing_key, message).await {
                Ok(c) => return confirmation(c, routing_key),
                Err(e) if !recovered => {
                    recovered = true;
                    self.publisher
                        .wait_for_recovery(e)
                        .await
                        .map_err(|e| broker_error(&self.url, &e))?;
                }
                Err(e) => return Err(broker_error(&self.url, &e)),
            }
        }
    }

    /// Publishes many messages to `exchange` with `routing_key`, a window of them in flight at
    /// once, and returns when the broker confirmed them all. After a broken connection the
    /// window in flight is published again (consumers are idempotent).
    pub async fn publish_many(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: &[Message],
    ) -> Result<(), QueueError> {
        for window in messages.chunks(256) {
            let mut recovered = false;
            loop {
                match self.publish_window(exchange, routing_key, window).await {
                    Ok(confirms) => {
                        for c in confirms {
                            confirmation(c, routing_key)?;
                        }
                        break;
                    }
                    Err(e) if !recovered => {
                        recovered = true;
                        self.publisher
                            .wait_for_recovery(e)
                            .await
                            .map_err(|e| broker_error(&self.url, &e))?;
                    }
                    Err(e) => return Err(broker_error(&self.url, &e)),
                }
            }
        }
        Ok(())
    }

    async fn publish_window(
        &self,
        exchange: &str,
        routing_key: &str,
        window: &[Message],
    ) -> Result<Vec<Confirmation>, lapin::Error> {
        let mut pending = Vec::with_capacity(window.len());
        for m in window {
            pending.push(
                self.publisher
                    .basic_publish(
                        exchange.into(),
                        routing_key.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &m.body,
                        properties(m),
                    )
                    .await?,
            );
        }
        let mut confirms = Vec::with_capacity(pending.len());
        for p in pending {
            confirms.push(p.await?);
        }
        Ok(confirms)
    }

    async fn publish_once(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Result<Confirmation, lapin::Error> {
        self.publisher
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties(message),
            )
            .await?
            .await
    }

    /// A channel of the caller's own on this connection.
    pub async fn new_channel(&self) -> Result<Channel, QueueError> {
        self.channel().await
    }

    /// A new channel; while the connection is recovering from a broker restart, waits for it
    /// (about a minute at most).
    async fn channel(&self) -> Result<Channel, QueueError> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut failures = 0;
        loop {
            match self.connection.create_channel().await {
                Ok(c) => return Ok(c),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "no channel yet; waiting for the connection");
                    failures += 1;
                    tokio::time::sleep(CHANNEL_WAIT.delay(failures)).await;
                }
                Err(e) => return Err(broker_error(&self.url, &e)),
            }
        }
    }

    /// Consumes `queue` with at most `prefetch` unacknowledged deliveries.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<AmqpConsumer, QueueError> {
        let err = |e: lapin::Error| broker_error(&self.url, &e);
        let channel = self.channel().await?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(err)?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        Ok(AmqpConsumer {
            channel,
            consumer,
            url: self.url.clone(),
        })
    }

    /// Ready messages and consumers of every queue of the topology.
    pub async fn depths(&self) -> Result<Vec<QueueDepth>, QueueError> {
        let err = |e: lapin::Error| broker_error(&self.url, &e);
        let channel = self.channel().await?;
        let mut out = Vec::new();
        for name in self.topology.queues() {
            let q = channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            out.push(QueueDepth {
                name,
                ready: u64::from(q.message_count()),
                consumers: u64::from(q.consumer_count()),
            });
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(out)
    }

    /// Deletes one queue and its messages.
    pub async fn delete_queue(&self, name: &str) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        channel
            .queue_delete(name.into(), lapin::options::QueueDeleteOptions::default())
            .await
            .map_err(|e| broker_error(&self.url, &e))?;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }

    /// Deletes every queue, stream and exchange of the topology (messages included): for tearing
    /// down a test or a retired installation.
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let err = |e: lapin::Error| broker_error(&self.url, &e);
        let channel = self.channel().await?;
        for name in self.topology.queues() {
            channel
                .queue_delete(
                    name.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await
                .map_err(err)?;
        }
        channel
            .exchange_delete(
                self.topology.events().as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(err)?;
        // The fleet's locations stream exists only where workers ran.
        let _ = channel
            .queue_delete(
                self.topology.blob_locations().as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// Whether the broker refused a declaration for its arguments (406 PRECONDITION_FAILED).
fn precondition_failed(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
}

/// Persistent JSON with the message id and headers.
fn properties(message: &Message) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(message.id.as_str().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(to_table(&message.headers))
}

fn confirmation(c: Confirmation, routing_key: &str) -> Result<(), QueueError> {
    match c {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(QueueError::Refused(format!(
            "no queue is bound for {routing_key}"
        ))),
        Confirmation::Nack(_) => Err(QueueError::Refused(format!(
            "the broker did not store the message for {routing_key}"
        ))),
        Confirmation::NotRequested => Err(QueueError::Refused(
            "publisher confirms are off on this channel".into(),
        )),
    }
}

fn to_table(headers: &Headers) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in headers {
        t.insert(ShortString::from(k.as_str()), string_arg(v));
    }
    t
}

fn from_table(t: Option<&FieldTable>) -> Headers {
    let mut out = Headers::new();
    if let Some(t) = t {
        for (k, v) in t.inner() {
            let value = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                other => format!("{other:?}"),
            };
            out.insert(k.as_str().to_owned(), value);
        }
    }
    out
}

/// Deliveries from one RabbitMQ queue.
pub struct AmqpConsumer {
    channel: Channel,
    consumer: lapin::Consumer,
    url: String,
}

impl AmqpConsumer {
    /// The next delivery; after a connection failure waits for recovery and goes on.
    pub async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            match self.consumer.next().await? {
                Ok(d) => {
                    return Some(Ok(Delivery {
                        id: d
                            .properties
                            .message_id()
                            .as_ref()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        headers: from_table(d.properties.headers().as_ref()),
                        redelivered: d.redelivered,
                        body: d.data,
                        acker: Acker::Amqp(d.acker),
                    }))
                }
                Err(e) => {
                    if let Err(e) = self.channel.wait_for_recovery(e).await {
                        return Some(Err(broker_error(&self.url, &e)));
                    }
                }
            }
        }
    }
}

pub(crate) async fn ack(acker: &lapin::Acker) -> Result<(), QueueError> {
    if !acker.usable() {
        // From before a recovery: the broker will deliver the message again.
        return Ok(());
    }
    acker
        .ack(BasicAckOptions::default())
        .await
        .map(|_| ())
        .map_err(|e| QueueError::Broker(e.to_string()))
}

pub(crate) async fn requeue(acker: &lapin::Acker) -> Result<(), QueueError> {
    if !acker.usable() {
        return Ok(());
    }
    acker
        .reject(BasicRejectOptions { requeue: true })
        .await
        .map(|_| ())
        .map_err(|e| QueueError::Broker(e.to_string()))
}
