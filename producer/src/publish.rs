//! The producer's publish step: each job becomes a message of its own trace (a
//! `producer.publish` root span whose context travels in the headers) and is published with
//! confirms, so that a job the broker did not take is an error here, not a loss.

use image_mirror_common::MirrorJob;
use image_mirror_queue::topology::ATTEMPT_HEADER;
use image_mirror_queue::{trace_context, Broker, Headers, Message, QueueError};

/// The message carrying `job`: its id, its JSON body, the first attempt, and a trace of its
/// own.
pub fn job_message(job: &MirrorJob) -> Message {
    let mut headers = Headers::new();
    headers.insert(ATTEMPT_HEADER.to_owned(), "1".to_owned());
    let span = tracing::info_span!(
        parent: None,
        "producer.publish",
        job.id = %job.id,
        job.source = %job.source_ref(),
        job.target = %job.target_ref(),
        job.origin = %job.origin,
        job.record = job.record,
    );
    trace_context::inject(&span, &mut headers);
    Message {
        id: job.id.clone(),
        body: job.to_json(),
        headers,
    }
}

/// Publishes `jobs` to the broker's jobs queue, each confirmed; how many were published.
pub async fn publish(broker: &Broker, jobs: &[MirrorJob]) -> Result<usize, QueueError> {
    let messages: Vec<Message> = jobs.iter().map(job_message).collect();
    broker.publish_jobs(&messages).await?;
    Ok(messages.len())
}
