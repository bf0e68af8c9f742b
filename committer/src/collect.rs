//! Collecting job events until every job of a run has ended: the event sink of the monolithic
//! `run`, and the reading half of the committer.

use std::collections::{HashMap, HashSet};

use std::future::Future;

use image_mirror_common::{JobEvent, MessageError};
use image_mirror_queue::{Consumer, QueueError};

/// Why collecting a run's events stopped before every job had ended.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The workers that would have produced the missing events ended.
    #[error("the workers stopped before every job had ended: {0}")]
    WorkersStopped(String),
}

/// Like [`collect_events`], while `workers_ended` (which completes, with why, when the
/// workers stop) has not completed: events that will never come are not waited for.
pub async fn collect_events_while(
    consumer: &mut Consumer,
    expected: &HashSet<String>,
    workers_ended: impl Future<Output = String>,
    on_event: impl FnMut(&JobEvent, usize),
) -> Result<HashMap<String, JobEvent>, CollectError> {
    tokio::select! {
        collected = collect_events(consumer, expected, on_event) => Ok(collected?),
        why = workers_ended => Err(CollectError::WorkersStopped(why)),
    }
}

/// Consumes events from `consumer` until each id in `expected` has one, acknowledging every
/// event. Events of other jobs are acknowledged and left out; a job's last event wins. Each
/// event is shown to `on_event` as it arrives.
pub async fn collect_events(
    consumer: &mut Consumer,
    expected: &HashSet<String>,
    mut on_event: impl FnMut(&JobEvent, usize),
) -> Result<HashMap<String, JobEvent>, QueueError> {
    let mut events: HashMap<String, JobEvent> = HashMap::new();
    while events.len() < expected.len() {
        let Some(delivery) = consumer.next().await else {
            return Err(QueueError::Closed);
        };
        let delivery = delivery?;
        match JobEvent::from_json(&delivery.body) {
            Ok(event) if expected.contains(&event.job_id) => {
                let first = !events.contains_key(&event.job_id);
                on_event(&event, events.len() + usize::from(first));
                events.insert(event.job_id.clone(), event);
            }
            Ok(_) => {}
            Err(MessageError::Malformed(e)) => {
                tracing::warn!(error = %e, "unreadable event skipped")
            }
            Err(e) => tracing::warn!(error = %e, "event skipped"),
        }
        delivery.ack().await?;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use image_mirror_queue::memory::MemoryBroker;
    use image_mirror_queue::Broker;

    use super::*;

    #[tokio::test]
    async fn workers_that_stop_end_the_wait_with_why() {
        let broker = Broker::Memory(MemoryBroker::default());
        let mut events = broker
            .consume(&broker.topology().committer(), 8)
            .await
            .unwrap();
        let expected = HashSet::from(["job-1".to_owned()]);
        let err = collect_events_while(
            &mut events,
            &expected,
            async { "the broker connection is gone".to_owned() },
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the workers stopped before every job had ended: the broker connection is gone"
        );
    }
}
