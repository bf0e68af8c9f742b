//! A fleet of workers acting as one, on RabbitMQ alone (no other server):
//!
//! - **Blob leases.** Before sending blob X to registry R, a worker takes X's lease in R: an
//!   exclusive queue named after (R, X) ([`Topology::blob_lease`]). One connection can hold an
//!   exclusive queue at a time (another declaring it gets `RESOURCE_LOCKED`), and the broker
//!   deletes it when that connection closes, so a killed worker's lease is free at once.
//! - **Blob state.** Each (R, X) has a last-value queue ([`Topology::blob_checkpoint`]:
//!   `x-max-length` 1, `drop-head`, `x-expires`) holding the newest [`BlobState`]: where the
//!   holder's upload stands after each chunk the registry confirmed, then, once the blob is in,
//!   the repository it is in (published with a confirm before the lease is let go). Whoever
//!   takes the lease next reads it: to mount the blob, or to resume the upload.
//! - **Shared blob locations.** Every worker says where it has put a blob on a fanout
//!   exchange ([`Topology::blob_locations`]) and hears what the others say, so that any worker
//!   mounts from any other's uploads.
//!
//! The coordinator has a connection of its own, without automatic recovery (a lease must die
//! with its connection, never come back by itself). When the broker cannot be reached, every
//! call fails at once for a few seconds, and the worker goes on alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::queue::topology::Topology;
use crate::queue::QueueError;
use crate::secret::{redact_url, Secret};

/// How long a blob's state outlives its last use.
const STATE_EXPIRES: Duration = Duration::from_secs(3600);
/// After a failed connection attempt, calls fail at once for this long.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);
/// The longest wait for one broker operation.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one worker has put a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLocation {
    /// The registry host.
    pub registry: String,
    /// The repository path in it.
    pub repository: String,
    /// The blob.
    pub digest: Digest,
}

/// The newest word on a blob in a registry, as its last lease holder left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BlobState {
    /// An upload under way: the registry confirmed `offset` bytes at `location`.
    Uploading {
        /// The repository the upload goes to.
        repository: String,
        /// The newest upload `Location` the registry gave.
        location: String,
        /// Bytes the registry confirmed.
        offset: u64,
    },
    /// The blob is in this repository.
    Landed {
        /// The repository path.
        repository: String,
    },
}

struct Link {
    connection: Arc<Connection>,
    channel: Channel,
}

/// The fleet's coordination through one broker.
pub struct Coordinator {
    url: Secret,
    shown: String,
    topology: Topology,
    link: tokio::sync::Mutex<Option<Link>>,
    down_until: std::sync::Mutex<Option<Instant>>,
}

fn broker_error(url: &str, e: &lapin::Error) -> QueueError {
    QueueError::Broker(format!("{url}: {e}"))
}

fn is_locked(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)))
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    tokio::time::timeout(OPERATION_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(QueueError::Broker(format!("{what}: no answer in time"))))
}

fn long_string(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

/// Arguments of a classic queue (exclusive queues cannot be quorum queues, whatever the
/// virtual host's default type).
fn classic() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), long_string("classic"));
    args
}

/// Arguments of a blob's last-value state queue.
fn state_queue_args() -> FieldTable {
    let mut args = classic();
    args.insert(ShortString::from("x-max-length"), AMQPValue::LongLongInt(1));
    args.insert(ShortString::from("x-overflow"), long_string("drop-head"));
    args.insert(
        ShortString::from("x-expires"),
        AMQPValue::LongLongInt(i64::try_from(STATE_EXPIRES.as_millis()).unwrap_or(i64::MAX)),
    );
    args
}

fn json_properties() -> BasicProperties {
    BasicProperties::default().with_content_type("application/json".into())
}

impl Coordinator {
    /// Connects to `url` and declares the locations exchange.
    pub async fn connect(url: &str, topology: Topology) -> Result<Self, QueueError> {
        let coordinator = Self {
            url: Secret::new(url.to_owned()),
            shown: redact_url(url),
            topology,
            link: tokio::sync::Mutex::new(None),
            down_until: std::sync::Mutex::new(None),
        };
        coordinator.link().await?;
        Ok(coordinator)
    }

    /// The names in use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The connection and its shared channel, connecting again when they are gone.
    async fn link(&self) -> Result<(Arc<Connection>, Channel), QueueError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            if l.connection.status().connected() && l.channel.status().connected() {
                return Ok((Arc::clone(&l.connection), l.channel.clone()));
            }
        }
        let down = *self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_some_and(|until| Instant::now() < until) {
            return Err(QueueError::Broker(format!("{}: unreachable", self.shown)));
        }
        match timed("connecting", self.open()).await {
            Ok(l) => {
                let out = (Arc::clone(&l.connection), l.channel.clone());
                *link = Some(l);
                Ok(out)
            }
            Err(e) => {
                *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + RECONNECT_AFTER);
                Err(e)
            }
        }
    }

    async fn open(&self) -> Result<Link, QueueError> {
        let err = |e: lapin::Error| broker_error(&self.shown, &e);
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(b"image-mirror fleet".to_vec()));
        let connection = Connection::connect(self.url.expose(), properties)
            .await
            .map_err(err)?;
        let channel = connection.create_channel().await.map_err(err)?;
        channel
            .exchange_declare(
                self.topology.blob_locations().as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        Ok(Link {
            connection: Arc::new(connection),
            channel,
        })
    }

    /// Takes the lease of `digest` in `registry`: `None` while another connection holds it.
    pub async fn try_lease(
        &self,
        registry: &str,
        digest: &Digest,
    ) -> Result<Option<Lease>, QueueError> {
        let (connection, _) = self.link().await?;
        let lease_queue = self.topology.blob_lease(registry, digest);
        timed("taking a lease", async {
            let err = |e: lapin::Error| broker_error(&self.shown, &e);
            let channel = connection.create_channel().await.map_err(err)?;
            let exclusive = QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            };
            match channel
                .queue_declare(lease_queue.as_str().into(), exclusive, classic())
                .await
            {
                Ok(_) => {}
                // The broker closed the channel with the error.
                Err(e) if is_locked(&e) => return Ok(None),
                Err(e) => return Err(err(e)),
            }
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(err)?;
            let state_queue = self.topology.blob_checkpoint(registry, digest);
            channel
                .queue_declare(
                    state_queue.as_str().into(),
                    QueueDeclareOptions::default(),
                    state_queue_args(),
                )
                .await
                .map_err(err)?;
            Ok(Some(Lease {
                channel,
                lease_queue: lease_queue.clone(),
                state_queue,
                shown: self.shown.clone(),
                released: false,
            }))
        })
        .await
    }

    /// Says where a blob is, for every worker (best effort: not confirmed).
    pub async fn announce(&self, location: &BlobLocation) -> Result<(), QueueError> {
        let (_, channel) = self.link().await?;
        let body = serde_json::to_vec(location).map_err(|e| QueueError::Broker(e.to_string()))?;
        timed("announcing a blob", async {
            channel
                .basic_publish(
                    self.topology.blob_locations().as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &body,
                    json_properties(),
                )
                .await
                .map(|_| ())
                .map_err(|e| broker_error(&self.shown, &e))
        })
        .await
    }

    /// Hears where the fleet puts blobs, from now on.
    pub async fn listen(&self) -> Result<LocationFeed, QueueError> {
        let (connection, _) = self.link().await?;
        timed("listening for blob locations", async {
            let err = |e: lapin::Error| broker_error(&self.shown, &e);
            let channel = connection.create_channel().await.map_err(err)?;
            let own = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            let queue = channel
                .queue_declare("".into(), own, classic())
                .await
                .map_err(err)?;
            channel
                .queue_bind(
                    queue.name().as_str().into(),
                    self.topology.blob_locations().as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            let consumer = channel
                .basic_consume(
                    queue.name().as_str().into(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            Ok(LocationFeed {
                _channel: channel,
                consumer,
            })
        })
        .await
    }

    /// Closes the connection: every lease it holds is let go.
    pub async fn close(&self) {
        if let Some(l) = self.link.lock().await.take() {
            let _ = l.connection.close(200, "bye".into()).await;
        }
    }

    /// Deletes the locations exchange: for tearing down a test or a retired installation.
    pub async fn delete_exchange(&self) -> Result<(), QueueError> {
        let (_, channel) = self.link().await?;
        channel
            .exchange_delete(
                self.topology.blob_locations().as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(|e| broker_error(&self.shown, &e))
    }
}

/// What a worker hears of where the fleet puts blobs.
pub struct LocationFeed {
    _channel: Channel,
    consumer: lapin::Consumer,
}

impl LocationFeed {
    /// The next location; `None` when the connection is gone (listen again). Messages that
    /// do not read as locations are skipped.
    pub async fn next(&mut self) -> Option<BlobLocation> {
        loop {
            let delivery = self.consumer.next().await?.ok()?;
            match serde_json::from_slice(&delivery.data) {
                Ok(location) => return Some(location),
                Err(e) => tracing::debug!(error = %e, "not a blob location; skipped"),
            }
        }
    }
}

/// The right to send one blob to one registry, held until [`landed`](Self::landed) or
/// [`abandon`](Self::abandon) (or the connection's end); dropped, it is let go.
pub struct Lease {
    channel: Channel,
    lease_queue: String,
    state_queue: String,
    shown: String,
    released: bool,
}

impl Lease {
    fn err(&self, e: &lapin::Error) -> QueueError {
        broker_error(&self.shown, e)
    }

    /// What the blob's previous holder left: where its upload stood, or where the blob is.
    pub async fn state(&self) -> Result<Option<BlobState>, QueueError> {
        timed("reading a blob's state", async {
            let got = self
                .channel
                .basic_get(self.state_queue.as_str().into(), BasicGetOptions::default())
                .await
                .map_err(|e| self.err(&e))?;
            let Some(message) = got else {
                return Ok(None);
            };
            let state = serde_json::from_slice(&message.delivery.data).ok();
            // Left in place for whoever comes next, until this holder says better.
            message
                .delivery
                .acker
                .reject(BasicRejectOptions { requeue: true })
                .await
                .map_err(|e| self.err(&e))?;
            Ok(state)
        })
        .await
    }

    async fn publish(&self, state: &BlobState) -> Result<lapin::PublisherConfirm, QueueError> {
        let body = serde_json::to_vec(state).map_err(|e| QueueError::Broker(e.to_string()))?;
        self.channel
            .basic_publish(
                "".into(),
                self.state_queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                json_properties(),
            )
            .await
            .map_err(|e| self.err(&e))
    }

    /// Records where the upload stands (after a chunk the registry confirmed), for a
    /// successor should this worker die. Not waited for: the next one replaces it.
    pub async fn save_upload(
        &self,
        repository: &str,
        location: &str,
        offset: u64,
    ) -> Result<(), QueueError> {
        let state = BlobState::Uploading {
            repository: repository.to_owned(),
            location: location.to_owned(),
            offset,
        };
        timed("saving an upload checkpoint", self.publish(&state))
            .await
            .map(|_| ())
    }

    /// The blob is in `repository`: says so (confirmed by the broker), then lets go.
    pub async fn landed(mut self, repository: &str) -> Result<(), QueueError> {
        let state = BlobState::Landed {
            repository: repository.to_owned(),
        };
        let said = timed("recording where a blob landed", async {
            let confirm = self.publish(&state).await?;
            confirm.await.map(|_| ()).map_err(|e| self.err(&e))
        })
        .await;
        let released = self.release().await;
        said.and(released)
    }

    /// The upload failed and was cancelled: forgets its checkpoint, then lets go.
    pub async fn abandon(mut self) -> Result<(), QueueError> {
        let purged = timed("forgetting a checkpoint", async {
            self.channel
                .queue_purge(
                    self.state_queue.as_str().into(),
                    QueuePurgeOptions::default(),
                )
                .await
                .map(|_| ())
                .map_err(|e| self.err(&e))
        })
        .await;
        let released = self.release().await;
        purged.and(released)
    }

    async fn release(&mut self) -> Result<(), QueueError> {
        self.released = true;
        let deleted = timed("letting a lease go", async {
            self.channel
                .queue_delete(
                    self.lease_queue.as_str().into(),
                    QueueDeleteOptions::default(),
                )
                .await
                .map(|_| ())
                .map_err(|e| self.err(&e))
        })
        .await;
        let _ = self.channel.close(200, "done".into()).await;
        deleted
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (channel, queue) = (self.channel.clone(), self.lease_queue.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = channel.close(200, "dropped".into()).await;
            });
        }
    }
}
