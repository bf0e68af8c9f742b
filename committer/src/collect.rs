//! Collecting job events until every job of a run has ended: the event sink of the monolithic
//! `run`, and the reading half of the committer.

use std::collections::{HashMap, HashSet};

use image_mirror_common::queue::{Consumer, QueueError};
use image_mirror_common::{JobEvent, MessageError};

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
