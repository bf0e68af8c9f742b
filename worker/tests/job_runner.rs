//! The worker loop's ways out, each bounded and visible: a copy that panics, an event the
//! broker refuses, a retry the broker refuses. Over the in-memory queue, which refuses what
//! RabbitMQ refuses, with a stand-in for the copy engine that counts its calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use image_mirror_common::{Digest, JobEvent, MirrorJob, Outcome, Requester};
use image_mirror_queue::memory::MemoryBroker;
use image_mirror_queue::topology::REASON_HEADER;
use image_mirror_queue::{Broker, Delivery, JobRetries};
use image_mirror_registry::RegistryError;
use image_mirror_worker::{
    run_worker, CopyError, CopyOutcome, CopyReport, Mirror, Phases, TargetOutcome, WorkerOptions,
};

/// Copies nothing, counts its calls, and panics on the calls `panic_on` lists; with `defer`,
/// every copy finds the source registry's rate limit spent; with `fail`, every copy finds the
/// source gone (a permanent failure).
#[derive(Clone, Default)]
struct Stub {
    calls: Arc<AtomicU32>,
    panic_on: Vec<u32>,
    defer: bool,
    fail: bool,
}

impl Mirror for Stub {
    fn mirror(
        &self,
        job: &MirrorJob,
    ) -> impl std::future::Future<Output = Vec<TargetOutcome>> + Send {
        let target = job.target_ref();
        let outcome = move |result: Result<CopyReport, CopyError>| {
            vec![TargetOutcome {
                target: target.clone(),
                result,
            }]
        };
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let panics = self.panic_on.contains(&call);
        let defer = self.defer;
        let fail = self.fail;
        async move {
            assert!(!panics, "copy number {call} blew up");
            if fail {
                return outcome(Err(CopyError::Registry(RegistryError::NotFound {
                    registry: "reg.test".into(),
                    operation: "manifest up/app:v1".into(),
                })));
            }
            if defer {
                return outcome(Err(CopyError::Registry(RegistryError::RateLimited {
                    registry: "reg.test".into(),
                    message: "the pull rate limit (100 per 6h) is spent".into(),
                    reset_in: Duration::from_secs(3600),
                })));
            }
            outcome(Ok(CopyReport {
                outcome: CopyOutcome::AlreadyPresent,
                digest: Digest::sha256_of(b"image"),
                target_digest: None,
                media_type: String::new(),
                platforms: Vec::new(),
                platform_subset: None,
                bytes_sent: 0,
                blobs_copied: 0,
                blobs_mounted: 0,
                blobs_skipped: 0,
                manifests_pushed: 0,
                resumes: 0,
                duration: Duration::ZERO,
                phases: Phases::default(),
                attached: Default::default(),
            }))
        }
    }
}

fn job() -> MirrorJob {
    MirrorJob::new(
        "reg.test/up/app".parse().unwrap(),
        "reg.test/mirror/app".parse().unwrap(),
        "v1".parse().unwrap(),
        false,
        Requester::Sync,
    )
}

/// A broker whose retries wait 20 ms, with one job published, and a worker on it.
async fn worker_on(
    broker: &Arc<Broker>,
    stub: &Stub,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<u64, image_mirror_queue::QueueError>>,
) {
    worker_reporting(broker, stub, image_mirror_worker::Deferral::DelayQueue).await
}

/// Like [`worker_on`], with deferred jobs handled as `deferral` says.
async fn worker_reporting(
    broker: &Arc<Broker>,
    stub: &Stub,
    deferral: image_mirror_worker::Deferral,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<u64, image_mirror_queue::QueueError>>,
) {
    image_mirror_producer::publish(broker, &[job()])
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(
        Arc::clone(broker),
        stub.clone(),
        WorkerOptions {
            concurrency: 2,
            grace: Duration::from_secs(1),
            retry_unreachable: true,
            deferral,
            notifier: None,
        },
        async {
            let _ = stopped.await;
        },
    ));
    (stop, worker)
}

fn memory(broker: &Broker) -> &MemoryBroker {
    match broker {
        Broker::Memory(m) => m,
        Broker::Amqp(_) => unreachable!(),
    }
}

async fn next_on(broker: &Broker, queue: &str) -> Delivery {
    let mut consumer = broker.consume(queue, 1).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a message in time")
        .unwrap()
        .unwrap()
}

fn quick_broker() -> Arc<Broker> {
    Arc::new(Broker::Memory(MemoryBroker::new(
        JobRetries::new(vec![Duration::from_millis(20); 5]).unwrap(),
    )))
}

#[tokio::test]
async fn a_refused_event_sends_the_job_to_wait_not_round_in_a_loop() {
    let broker = quick_broker();
    // Nothing is bound for events any more: every event publish is refused.
    memory(&broker).delete_queue(&broker.topology().committer());
    let stub = Stub::default();
    let (stop, worker) = worker_on(&broker, &stub).await;
    let dead = next_on(&broker, &broker.topology().dead()).await;
    let reason = dead.headers.get(REASON_HEADER).cloned().unwrap_or_default();
    assert!(reason.contains("event refused"), "{reason}");
    assert!(
        reason.contains("no queue is bound for job.already_present"),
        "{reason}"
    );
    // One copy per attempt, then the dead-letter queue: bounded, not a tight loop.
    assert_eq!(
        stub.calls.load(Ordering::SeqCst),
        broker.topology().retries().max_attempts()
    );
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    assert!(memory(&broker).peek(&broker.topology().jobs()).is_empty());
}

#[tokio::test]
async fn a_refused_event_of_a_reported_deferral_is_never_acknowledged() {
    // `run` reports a deferred job by its event: when the broker refuses that event, the job
    // is not acknowledged as if reported, it comes again (and, bounded, ends dead-lettered).
    let broker = quick_broker();
    memory(&broker).delete_queue(&broker.topology().committer());
    let stub = Stub {
        defer: true,
        ..Stub::default()
    };
    let (stop, worker) =
        worker_reporting(&broker, &stub, image_mirror_worker::Deferral::Report).await;
    let dead = next_on(&broker, &broker.topology().dead()).await;
    let reason = dead.headers.get(REASON_HEADER).cloned().unwrap_or_default();
    assert!(reason.contains("event refused"), "{reason}");
    assert!(reason.contains("job.deferred"), "{reason}");
    assert_eq!(
        stub.calls.load(Ordering::SeqCst),
        broker.topology().retries().max_attempts()
    );
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_event_of_a_failed_job_is_never_acknowledged() {
    // A failure is settled by its event and its dead letter: when the broker refuses the
    // event, the job is neither dead-lettered as reported nor acknowledged; it waits and comes
    // again, and after the last attempt goes to the dead-letter queue saying why.
    let broker = quick_broker();
    memory(&broker).delete_queue(&broker.topology().committer());
    let stub = Stub {
        fail: true,
        ..Stub::default()
    };
    let (stop, worker) = worker_on(&broker, &stub).await;
    let dead = next_on(&broker, &broker.topology().dead()).await;
    let reason = dead.headers.get(REASON_HEADER).cloned().unwrap_or_default();
    assert!(reason.contains("attempts spent"), "{reason}");
    assert!(reason.contains("event refused"), "{reason}");
    assert!(reason.contains("job.failed"), "{reason}");
    assert_eq!(
        stub.calls.load(Ordering::SeqCst),
        broker.topology().retries().max_attempts()
    );
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    assert!(memory(&broker).peek(&broker.topology().jobs()).is_empty());
}

#[tokio::test]
async fn a_panicking_copy_is_logged_and_tried_again_later() {
    let broker = quick_broker();
    let stub = Stub {
        panic_on: vec![1],
        ..Stub::default()
    };
    let (stop, worker) = worker_on(&broker, &stub).await;
    let delivery = next_on(&broker, &broker.topology().committer()).await;
    let event = JobEvent::from_json(&delivery.body).unwrap();
    assert_eq!(event.outcome, Outcome::AlreadyPresent);
    assert_eq!(event.attempts, 2, "the second attempt succeeded");
    assert_eq!(stub.calls.load(Ordering::SeqCst), 2);
    let _ = stop.send(());
    // The worker itself lived on.
    assert_eq!(worker.await.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn a_refused_retry_dead_letters_the_job_with_the_reason() {
    let broker = quick_broker();
    memory(&broker).delete_queue(&broker.topology().committer());
    memory(&broker).delete_queue(&broker.topology().retry(1));
    let stub = Stub::default();
    let (stop, worker) = worker_on(&broker, &stub).await;
    let dead = next_on(&broker, &broker.topology().dead()).await;
    let reason = dead.headers.get(REASON_HEADER).cloned().unwrap_or_default();
    assert!(reason.contains("retry refused by the broker"), "{reason}");
    assert_eq!(stub.calls.load(Ordering::SeqCst), 1);
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
}
