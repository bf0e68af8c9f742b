//! A fleet of workers acting as one, on RabbitMQ alone (no other server). The broker holds
//! state for the blobs in flight, not for every blob sent:
//!
//! - **Blob leases.** Before sending blob X to registry R, a worker takes X's lease in R: an
//!   exclusive queue named after (R, X) ([`Topology::blob_lease`]). One connection can hold an
//!   exclusive queue at a time (another declaring it gets `RESOURCE_LOCKED`), and the broker
//!   deletes it when that connection closes, so a killed worker's lease is free at once. A
//!   lease costs a declaration and a deletion on a channel the coordinator keeps for the
//!   next one.
//! - **Upload checkpoints.** A blob sent in chunks has a last-value queue
//!   ([`Topology::blob_checkpoint`]: `x-max-length` 1, `drop-head`, `x-expires`) holding where
//!   the holder's upload stands after each chunk the registry confirmed; whoever takes the
//!   lease next resumes from it. It is declared with the first checkpoint (or by a successor
//!   reading it) and deleted when the blob lands or the upload is abandoned, so that only a
//!   killed holder's checkpoint outlives its upload, until its expiry.
//! - **Shared blob locations.** Every worker appends where it has put a blob to the
//!   locations stream ([`locations`](super::locations)) and reads what the others append, so
//!   that any worker mounts from any other's uploads, and a worker that starts knows the
//!   last hour's. What a registry taught a worker of its uploads (a request limit, a stuck
//!   `Range`) goes the same way, so that the fleet's first blob alone pays for it.
//!
//! The coordinator has a connection of its own, without automatic recovery (a lease must die
//! with its connection, never come back by itself). When the broker cannot be reached, every
//! call fails at once for a few seconds, and the worker goes on alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, BasicRejectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};

use crate::locations;
pub use crate::locations::{BlobLocation, FleetNews, LocationFeed, ReadFrom};
use crate::nodes::Nodes;
use crate::topology::Topology;
use crate::QueueError;
use image_mirror_common::digest::Digest;
use image_mirror_common::lesson::Lesson;
use image_mirror_common::secret::{redact_url, Secret};

/// How long a killed holder's checkpoint outlives its last use.
const STATE_EXPIRES: Duration = Duration::from_secs(3600);
/// After a failed connection attempt, calls fail at once for this long.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);
/// The longest wait for one broker operation.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Lease channels kept for the next leases.
const IDLE_CHANNELS: usize = 64;

/// Where the upload of a blob stands, as its last lease holder left it.
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
}

struct Link {
    connection: Arc<Connection>,
    channel: Channel,
}

/// Lease channels of the current connection, kept between leases.
type IdleChannels = Arc<Mutex<Vec<Channel>>>;

/// The fleet's coordination through one broker.
pub struct Coordinator {
    url: Secret,
    shown: String,
    topology: Topology,
    link: tokio::sync::Mutex<Option<Link>>,
    down_until: Mutex<Option<Instant>>,
    idle: IdleChannels,
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

/// Arguments of a blob's last-value checkpoint queue.
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Coordinator {
    /// Connects to `url` and declares the locations stream. A broker that is up but cannot
    /// serve the stream yet (a node just started brings its streams back a few seconds after
    /// its queues) is not an error: the coordinator connects again at its next call, and until
    /// then every call fails at once and the worker sends alone.
    pub async fn connect(url: &str, topology: Topology) -> Result<Self, QueueError> {
        let coordinator = Self {
            url: Secret::new(url.to_owned()),
            shown: Nodes::parse(url).map_or_else(|_| redact_url(url), |n| n.shown()),
            topology,
            link: tokio::sync::Mutex::new(None),
            down_until: Mutex::new(None),
            idle: IdleChannels::default(),
        };
        if let Err(e) = coordinator.link().await {
            tracing::warn!(error = %e, "the fleet's coordination is not available yet; sending alone until it is");
        }
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
        let down = *lock(&self.down_until);
        if down.is_some_and(|until| Instant::now() < until) {
            return Err(QueueError::Broker(format!("{}: unreachable", self.shown)));
        }
        match timed("connecting", self.open()).await {
            Ok(l) => {
                let out = (Arc::clone(&l.connection), l.channel.clone());
                *link = Some(l);
                lock(&self.idle).clear();
                Ok(out)
            }
            Err(e) => {
                *lock(&self.down_until) = Some(Instant::now() + RECONNECT_AFTER);
                Err(e)
            }
        }
    }

    async fn open(&self) -> Result<Link, QueueError> {
        let err = |e: lapin::Error| broker_error(&self.shown, &e);
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(b"image-mirror fleet".to_vec()));
        let connection = Nodes::parse(self.url.expose())?
            .connect(properties)
            .await
            .map_err(err)?;
        let channel = connection.create_channel().await.map_err(err)?;
        locations::declare(&channel, &self.topology.blob_locations())
            .await
            .map_err(err)?;
        Ok(Link {
            connection: Arc::new(connection),
            channel,
        })
    }

    /// A lease channel: one kept from an earlier lease, else a new one.
    async fn lease_channel(&self, connection: &Connection) -> Result<Channel, QueueError> {
        loop {
            let kept = lock(&self.idle).pop();
            match kept {
                Some(c) if c.status().connected() => return Ok(c),
                Some(_) => {}
                None => {
                    return connection
                        .create_channel()
                        .await
                        .map_err(|e| broker_error(&self.shown, &e))
                }
            }
        }
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
            let channel = self.lease_channel(&connection).await?;
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
                Err(e) => return Err(broker_error(&self.shown, &e)),
            }
            Ok(Some(Lease {
                channel,
                lease_queue: lease_queue.clone(),
                state_queue: self.topology.blob_checkpoint(registry, digest),
                state_declared: AtomicBool::new(false),
                idle: Arc::clone(&self.idle),
                shown: self.shown.clone(),
                released: false,
            }))
        })
        .await
    }

    /// Says where a blob is, for every worker (best effort: not confirmed).
    pub async fn announce(&self, location: &BlobLocation) -> Result<(), QueueError> {
        self.tell(&FleetNews::Location(location.clone())).await
    }

    /// Tells every worker what a registry taught this one of its uploads (best effort).
    pub async fn teach(&self, lesson: &Lesson) -> Result<(), QueueError> {
        self.tell(&FleetNews::UploadLimits {
            upload_limits: lesson.clone(),
        })
        .await
    }

    async fn tell(&self, news: &FleetNews) -> Result<(), QueueError> {
        let (_, channel) = self.link().await?;
        let body = serde_json::to_vec(news).map_err(|e| QueueError::Broker(e.to_string()))?;
        timed("telling the fleet", async {
            channel
                .basic_publish(
                    "".into(),
                    self.topology.blob_locations().as_str().into(),
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

    /// Hears where the fleet puts blobs: from `from` on, then as they are announced.
    pub async fn listen(&self, from: ReadFrom) -> Result<LocationFeed, QueueError> {
        let (connection, _) = self.link().await?;
        timed("listening for blob locations", async {
            let err = |e: lapin::Error| broker_error(&self.shown, &e);
            let channel = connection.create_channel().await.map_err(err)?;
            locations::read(channel, &self.topology.blob_locations(), from)
                .await
                .map_err(err)
        })
        .await
    }

    /// Closes the connection: every lease it holds is let go.
    pub async fn close(&self) {
        if let Some(l) = self.link.lock().await.take() {
            let _ = l.connection.close(200, "bye".into()).await;
        }
        lock(&self.idle).clear();
    }

    /// Deletes the locations stream: for tearing down a test or a retired installation.
    pub async fn delete_locations(&self) -> Result<(), QueueError> {
        let (_, channel) = self.link().await?;
        channel
            .queue_delete(
                self.topology.blob_locations().as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| broker_error(&self.shown, &e))
    }
}

/// The right to send one blob to one registry, held until [`landed`](Self::landed) or
/// [`abandon`](Self::abandon) (or the connection's end); dropped, it is let go.
pub struct Lease {
    channel: Channel,
    lease_queue: String,
    state_queue: String,
    state_declared: AtomicBool,
    idle: IdleChannels,
    shown: String,
    released: bool,
}

impl Lease {
    fn err(&self, e: &lapin::Error) -> QueueError {
        broker_error(&self.shown, e)
    }

    /// Declares the checkpoint queue, once per lease.
    async fn declare_state(&self) -> Result<(), QueueError> {
        if self.state_declared.load(Ordering::Acquire) {
            return Ok(());
        }
        self.channel
            .queue_declare(
                self.state_queue.as_str().into(),
                QueueDeclareOptions::default(),
                state_queue_args(),
            )
            .await
            .map_err(|e| self.err(&e))?;
        self.state_declared.store(true, Ordering::Release);
        Ok(())
    }

    /// Where the previous holder's upload stood, if it left a checkpoint. Only worth asking
    /// for a blob sent in chunks (the others never leave one).
    pub async fn state(&self) -> Result<Option<BlobState>, QueueError> {
        timed("reading a blob's checkpoint", async {
            self.declare_state().await?;
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

    /// Records where the upload stands (after a chunk the registry confirmed), for a
    /// successor should this worker die. Not confirmed: the next one replaces it.
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
        let body = serde_json::to_vec(&state).map_err(|e| QueueError::Broker(e.to_string()))?;
        timed("saving an upload checkpoint", async {
            self.declare_state().await?;
            self.channel
                .basic_publish(
                    "".into(),
                    self.state_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    json_properties(),
                )
                .await
                .map(|_| ())
                .map_err(|e| self.err(&e))
        })
        .await
    }

    /// The blob is in: forgets its checkpoint, if any, and lets go.
    pub async fn landed(self) -> Result<(), QueueError> {
        self.finish().await
    }

    /// The upload failed and was cancelled: forgets its checkpoint, if any, and lets go.
    pub async fn abandon(self) -> Result<(), QueueError> {
        self.finish().await
    }

    async fn finish(mut self) -> Result<(), QueueError> {
        self.released = true;
        let result = timed("letting a lease go", async {
            if self.state_declared.load(Ordering::Acquire) {
                self.delete(&self.state_queue).await?;
            }
            self.delete(&self.lease_queue).await
        })
        .await;
        if result.is_ok() && self.channel.status().connected() {
            let mut idle = lock(&self.idle);
            if idle.len() < IDLE_CHANNELS {
                idle.push(self.channel.clone());
                return result;
            }
        }
        let _ = self.channel.close(200, "done".into()).await;
        result
    }

    async fn delete(&self, queue: &str) -> Result<(), QueueError> {
        self.channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| self.err(&e))
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
