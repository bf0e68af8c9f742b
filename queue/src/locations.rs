//! What the fleet learns: one RabbitMQ **stream** per topology
//! ([`Topology::blob_locations`](crate::topology::Topology::blob_locations)), appended to
//! by every worker and read by every worker. Mostly where blobs landed, so that any worker
//! mounts from any other's uploads; also what a registry taught a worker of its uploads (a
//! request limit, a stuck `Range`), so that only the fleet's first blob pays for it.
//!
//! A stream keeps its messages on disk and costs the broker about the same memory whatever
//! their number; its retention (an hour, at most [`MAX_BYTES`]) bounds the disk. A worker
//! starting reads the last hour, then goes on with what is appended; one listening again after
//! a broken connection goes on from the offset after the last it read, so that a broker
//! restart loses nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Channel;
use serde::{Deserialize, Serialize};

use image_mirror_common::digest::Digest;
use image_mirror_common::lesson::Lesson;

/// How far back a worker that starts reads.
pub const LOOK_BACK: Duration = Duration::from_secs(3600);
/// The most the stream keeps on disk; the oldest segments go first.
pub const MAX_BYTES: i64 = 256 * 1024 * 1024;
/// The size of one segment of the stream (retention drops whole segments).
const SEGMENT_BYTES: i64 = 8 * 1024 * 1024;
/// Locations delivered to a reader before it acknowledges (a stream consumer must set one).
const PREFETCH: u16 = 500;
const OFFSET_HEADER: &str = "x-stream-offset";

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

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FleetNews {
    /// Where a worker has put a blob.
    Location(BlobLocation),
    /// What a registry taught a worker of its uploads.
    UploadLimits {
        /// The lesson.
        upload_limits: Lesson,
    },
}

fn long_string(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

/// The declaration of the locations stream (every declaration must carry the same arguments).
pub(crate) async fn declare(channel: &Channel, name: &str) -> Result<(), lapin::Error> {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), long_string("stream"));
    args.insert(ShortString::from("x-max-age"), long_string("1h"));
    args.insert(
        ShortString::from("x-max-length-bytes"),
        AMQPValue::LongLongInt(MAX_BYTES),
    );
    args.insert(
        ShortString::from("x-stream-max-segment-size-bytes"),
        AMQPValue::LongLongInt(SEGMENT_BYTES),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), durable, args)
        .await
        .map(|_| ())
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// What was appended since [`LOOK_BACK`] ago.
    LookBack,
    /// The location after the last one read (by its stream offset).
    After(i64),
}

fn offset_argument(from: ReadFrom) -> AMQPValue {
    match from {
        ReadFrom::After(offset) => AMQPValue::LongLongInt(offset.saturating_add(1)),
        ReadFrom::LookBack => {
            let since = SystemTime::now()
                .checked_sub(LOOK_BACK)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            AMQPValue::Timestamp(since)
        }
    }
}

/// Starts reading the stream `name` on `channel` (a channel of the reader's own).
pub(crate) async fn read(
    channel: Channel,
    name: &str,
    from: ReadFrom,
) -> Result<LocationFeed, lapin::Error> {
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert(ShortString::from(OFFSET_HEADER), offset_argument(from));
    let consumer = channel
        .basic_consume(name.into(), "".into(), BasicConsumeOptions::default(), args)
        .await?;
    Ok(LocationFeed {
        _channel: channel,
        consumer,
        last: match from {
            ReadFrom::After(offset) => Some(offset),
            ReadFrom::LookBack => None,
        },
    })
}

/// What a worker hears of where the fleet puts blobs.
pub struct LocationFeed {
    _channel: Channel,
    consumer: lapin::Consumer,
    last: Option<i64>,
}

impl LocationFeed {
    /// The next news; `None` when the connection is gone (listen again, from
    /// [`resume`](Self::resume)). Messages that do not read as news are skipped.
    pub async fn next(&mut self) -> Option<FleetNews> {
        loop {
            let delivery = self.consumer.next().await?.ok()?;
            if let Some(offset) = stream_offset(delivery.properties.headers().as_ref()) {
                self.last = Some(offset);
            }
            // Acknowledged only to make room in the prefetch: a stream keeps its messages.
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::debug!(error = %e, "could not acknowledge a blob location");
                return None;
            }
            match serde_json::from_slice(&delivery.data) {
                Ok(news) => return Some(news),
                Err(e) => tracing::debug!(error = %e, "not news of the fleet; skipped"),
            }
        }
    }

    /// Where a reader listening again goes on from: after the last location read.
    pub fn resume(&self) -> ReadFrom {
        self.last.map_or(ReadFrom::LookBack, ReadFrom::After)
    }
}

fn stream_offset(headers: Option<&FieldTable>) -> Option<i64> {
    match headers?.inner().get(OFFSET_HEADER)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}
