//! The in-process adapter: queues in memory, for the monolithic mode and tests. Same
//! semantics as the broker: the topology's queues exist from the start, and a message for a
//! queue that does not exist (or an event no queue is bound for) is refused, as RabbitMQ
//! refuses a mandatory publish it cannot route; `prefetch` bounds unacknowledged deliveries
//! per consumer, a delivery dropped without an ack comes again, retries wait their delay,
//! events reach the committer queue through its `job.*` binding.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::job_retries::JobRetries;
use crate::topology::{Topology, ATTEMPT_HEADER};
use crate::{Acker, Delivery, Message, QueueDepth, QueueError};

#[derive(Default)]
struct QueueState {
    ready: VecDeque<(Message, bool)>,
    consumers: u64,
}

#[derive(Default)]
struct Inner {
    queues: Mutex<HashMap<String, QueueState>>,
    notifies: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Inner {
    fn notify(&self, queue: &str) -> Arc<Notify> {
        let mut n = self.notifies.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(n.entry(queue.to_owned()).or_default())
    }

    /// Adds `message` to `queue`; `false` when the queue does not exist.
    fn push(&self, queue: &str, message: Message, redelivered: bool, front: bool) -> bool {
        {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let Some(q) = queues.get_mut(queue) else {
                return false;
            };
            if front {
                q.ready.push_front((message, redelivered));
            } else {
                q.ready.push_back((message, redelivered));
            }
        }
        self.notify(queue).notify_one();
        true
    }

    fn pop(&self, queue: &str) -> Option<(Message, bool)> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.get_mut(queue)?.ready.pop_front()
    }
}

/// Queues in this process.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
    topology: Topology,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new(JobRetries::default())
    }
}

impl MemoryBroker {
    /// A broker whose retries wait as `retries` says, with the topology's queues.
    pub fn new(retries: JobRetries) -> Self {
        let topology = Topology::default().with_retries(retries);
        let inner = Inner::default();
        {
            let mut queues = inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            for name in topology.queues() {
                queues.insert(name, QueueState::default());
            }
        }
        Self {
            inner: Arc::new(inner),
            topology,
        }
    }

    /// The names this broker uses.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Adds a message to `queue`; refused when the queue does not exist.
    pub fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        if self.inner.push(queue, message, false, false) {
            Ok(())
        } else {
            Err(QueueError::Refused(format!(
                "no queue is bound for {queue}"
            )))
        }
    }

    /// Routes an event by `routing_key`: to the committer's queue through its `job.*`
    /// binding; refused when nothing is bound for it.
    pub fn publish_event(&self, routing_key: &str, message: Message) -> Result<(), QueueError> {
        if !Topology::committer_binds(routing_key) {
            return Err(QueueError::Refused(format!(
                "no queue is bound for {routing_key}"
            )));
        }
        self.publish(&self.topology.committer(), message)
            .map_err(|_| QueueError::Refused(format!("no queue is bound for {routing_key}")))
    }

    /// Deletes `queue` and its messages, as `queue.delete` does on RabbitMQ.
    pub fn delete_queue(&self, queue: &str) {
        let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.remove(queue);
    }

    /// Puts `message` (its attempt header already set) back on the jobs queue after the delay
    /// of retry `retry`.
    pub fn publish_retry(&self, message: Message, retry: u32) -> Result<(), QueueError> {
        let delay = self
            .topology
            .retries()
            .delay(retry)
            .ok_or_else(|| QueueError::Refused(format!("no retry number {retry}")))?;
        let queue = self
            .topology
            .retry(usize::try_from(retry).unwrap_or(usize::MAX));
        if !self
            .inner
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&queue)
        {
            return Err(QueueError::Refused(format!(
                "no queue is bound for {queue}"
            )));
        }
        let inner = Arc::clone(&self.inner);
        let jobs = self.topology.jobs();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if !inner.push(&jobs, message, false, false) {
                tracing::warn!(queue = %jobs, "a retried job's queue is gone; the job is dropped");
            }
        });
        Ok(())
    }

    /// Puts `message` back on the jobs queue after `delay`.
    pub fn publish_after(&self, message: Message, delay: Duration) -> Result<(), QueueError> {
        let inner = Arc::clone(&self.inner);
        let jobs = self.topology.jobs();
        if !inner
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&jobs)
        {
            return Err(QueueError::Refused(format!("no queue is bound for {jobs}")));
        }
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if !inner.push(&jobs, message, false, false) {
                tracing::warn!(queue = %jobs, "a deferred job's queue is gone; the job is dropped");
            }
        });
        Ok(())
    }

    /// A consumer of `queue` with at most `prefetch` unacknowledged deliveries.
    pub fn consume(&self, queue: &str, prefetch: u16) -> MemoryConsumer {
        {
            let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(q) = queues.get_mut(queue) {
                q.consumers += 1;
            }
        }
        MemoryConsumer {
            inner: Arc::clone(&self.inner),
            queue: queue.to_owned(),
            prefetch: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
        }
    }

    /// Messages ready in each known queue.
    pub fn depths(&self) -> Vec<QueueDepth> {
        let queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<QueueDepth> = queues
            .iter()
            .map(|(name, q)| QueueDepth {
                name: name.clone(),
                ready: q.ready.len() as u64,
                consumers: q.consumers,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Messages ready in `queue`, oldest first (for reports and tests).
    pub fn peek(&self, queue: &str) -> Vec<Message> {
        let queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .get(queue)
            .map(|q| q.ready.iter().map(|(m, _)| m.clone()).collect())
            .unwrap_or_default()
    }
}

/// Deliveries from one in-memory queue.
pub struct MemoryConsumer {
    inner: Arc<Inner>,
    queue: String,
    prefetch: Arc<Semaphore>,
}

impl MemoryConsumer {
    /// The next delivery; waits while `prefetch` deliveries are unacknowledged or the queue is
    /// empty.
    pub async fn next(&mut self) -> Option<Delivery> {
        let permit = Arc::clone(&self.prefetch).acquire_owned().await.ok()?;
        let notify = self.inner.notify(&self.queue);
        loop {
            if let Some((message, redelivered)) = self.inner.pop(&self.queue) {
                return Some(Delivery {
                    id: message.id.clone(),
                    body: message.body.clone(),
                    headers: message.headers.clone(),
                    redelivered,
                    acker: Acker::Memory(MemoryAcker {
                        inner: Arc::clone(&self.inner),
                        queue: self.queue.clone(),
                        message: Some(message),
                        _permit: permit,
                    }),
                });
            }
            notify.notified().await;
        }
    }
}

/// Acknowledges an in-memory delivery; dropped unacknowledged, it requeues the message.
pub struct MemoryAcker {
    inner: Arc<Inner>,
    queue: String,
    message: Option<Message>,
    _permit: OwnedSemaphorePermit,
}

impl MemoryAcker {
    pub(crate) fn ack(mut self) {
        self.message = None;
    }

    pub(crate) fn requeue(self) {
        // Drop does it.
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if let Some(m) = self.message.take() {
            let _ = self.inner.push(&self.queue, m, true, true);
        }
    }
}

/// Sets the attempt header of `message`.
pub fn with_attempt(mut message: Message, attempt: u32) -> Message {
    message
        .headers
        .insert(ATTEMPT_HEADER.to_owned(), attempt.to_string());
    message
}
