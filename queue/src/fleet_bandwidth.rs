//! The fleet's bandwidth budget: a cap given to workers (`--max-bandwidth` with `--fleet on`)
//! is the fleet's, not each worker's. Every worker says every second, on a fanout exchange
//! (`<prefix>.bandwidth`), whether it moved blob bytes since it last said so; each hears the
//! others on a queue of its own. A worker's share is its part of the workers that are moving
//! bytes: alone, the whole cap; with two others, a third. What a worker said holds for
//! [`LEASE`]: a worker that dies (`kill -9`) says nothing more, and the others take its share
//! back when its word runs out. A worker that starts moving bytes counts itself in before it
//! has been heard, so that the fleet's total never overshoots by a whole share.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::amqp::AmqpBroker;
use crate::QueueError;

/// How often a worker says whether it moves bytes.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long what a worker said holds.
pub const LEASE: Duration = Duration::from_secs(3);

/// What a worker says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Word {
    pub worker: String,
    pub busy: bool,
    /// Bytes it moved since it last said.
    #[serde(default)]
    pub moved: u64,
    /// The fleet's cap it was given, bytes per second (0: none).
    #[serde(default)]
    pub cap: u64,
}

/// What this worker knows of the others.
#[derive(Debug, Default)]
struct Peers {
    /// Each other worker's last word: when, and whether it was moving bytes.
    heard: HashMap<String, (Instant, bool)>,
}

impl Peers {
    /// This worker's share of the cap: one part of those moving bytes (itself counted, busy
    /// or about to be).
    fn share(&self, me: &str, now: Instant) -> f64 {
        let others = self
            .heard
            .iter()
            .filter(|(w, (at, busy))| w.as_str() != me && *busy && now.duration_since(*at) < LEASE)
            .count();
        1.0 / (others + 1) as f64
    }
}

/// Shares the cap with the fleet until the connection goes: says every [`HEARTBEAT`] whether
/// `moved()` (the bytes moved since it was last asked) was more than nothing, and sets the
/// share it computes with `set_share`. Returns when the broker's connection is gone (the
/// caller starts it again).
pub async fn share_bandwidth(
    broker: &AmqpBroker,
    me: &str,
    cap: u64,
    moved: impl Fn() -> u64,
    set_share: impl Fn(f64),
) -> Result<(), QueueError> {
    let (channel, mut words) = listen(broker).await?;
    let exchange = broker.topology().bandwidth();
    let err = |e: lapin::Error| QueueError::Broker(format!("the fleet's bandwidth: {e}"));
    let mut peers = Peers::default();
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let bytes = moved();
                let word = Word { worker: me.to_owned(), busy: bytes > 0, moved: bytes, cap };
                let body = serde_json::to_vec(&word).unwrap_or_default();
                channel
                    .basic_publish(exchange.as_str().into(), "".into(), BasicPublishOptions::default(), &body, BasicProperties::default())
                    .await
                    .map_err(err)?;
                set_share(peers.share(me, Instant::now()));
            }
            heard = words.next() => match heard {
                Some(Ok(d)) => {
                    if let Ok(word) = serde_json::from_slice::<Word>(&d.data) {
                        peers.heard.insert(word.worker, (Instant::now(), word.busy));
                    }
                }
                _ => return Err(QueueError::Broker("the fleet's bandwidth: the connection is gone".into())),
            },
        }
    }
}

/// What the workers say during `span` (each one's last word): for `status`.
/// Nothing (at once) when no worker shares a cap: the exchange does not exist.
pub async fn overhear(broker: &AmqpBroker, span: Duration) -> Result<Vec<Word>, QueueError> {
    let probe = broker.new_channel().await?;
    let exists = probe
        .exchange_declare(
            broker.topology().bandwidth().as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .is_ok();
    let _ = probe.close(200, "done".into()).await;
    if !exists {
        return Ok(Vec::new());
    }
    let (_channel, mut words) = listen(broker).await?;
    let mut heard: HashMap<String, Word> = HashMap::new();
    let deadline = Instant::now() + span;
    while let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, words.next()).await {
        if let Ok(word) = serde_json::from_slice::<Word>(&d.data) {
            heard.insert(word.worker.clone(), word);
        }
    }
    let mut words: Vec<Word> = heard.into_values().collect();
    words.sort_by(|a, b| a.worker.cmp(&b.worker));
    Ok(words)
}

/// A channel with a queue of its own bound to the fleet's bandwidth exchange, and what
/// arrives on it.
async fn listen(broker: &AmqpBroker) -> Result<(lapin::Channel, lapin::Consumer), QueueError> {
    let exchange = broker.topology().bandwidth();
    let err = |e: lapin::Error| QueueError::Broker(format!("the fleet's bandwidth: {e}"));
    let channel = broker.new_channel().await?;
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    let words = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    Ok((channel, words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_one_part_of_the_busy_workers_whose_word_holds() {
        let now = Instant::now();
        let mut peers = Peers::default();
        assert!((peers.share("a", now) - 1.0).abs() < 1e-9);
        peers.heard.insert("b".into(), (now, true));
        peers.heard.insert("c".into(), (now, true));
        peers.heard.insert("idle".into(), (now, false));
        peers.heard.insert("a".into(), (now, true));
        assert!((peers.share("a", now) - 1.0 / 3.0).abs() < 1e-9);
        // c's word runs out: it was killed.
        let later = now + LEASE + Duration::from_millis(1);
        peers.heard.insert("b".into(), (later, true));
        assert!((peers.share("a", later) - 0.5).abs() < 1e-9);
    }
}
