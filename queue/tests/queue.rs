//! The queue port's two adapters against the same expectations: RabbitMQ (real broker, a
//! private topology prefix per test) and in-memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::memory::MemoryBroker;
use image_mirror_queue::topology::{Topology, REASON_HEADER};
use image_mirror_queue::{Broker, Consumer, Headers, Message, QueueError};
use image_mirror_testkit::rabbitmq;

fn prefix(test: &str) -> Topology {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Topology::new(&format!("test.{test}.{unique}"))
}

async fn amqp(test: &str) -> Broker {
    Broker::Amqp(Box::new(
        AmqpBroker::connect(&rabbitmq::amqp_url(), prefix(test))
            .await
            .unwrap(),
    ))
}

fn memory() -> Broker {
    Broker::Memory(MemoryBroker::new(
        image_mirror_queue::JobRetries::new(vec![Duration::from_millis(50); 5]).unwrap(),
    ))
}

fn message(n: usize) -> Message {
    let mut headers = Headers::new();
    headers.insert("traceparent".into(), format!("00-{n:032x}-{n:016x}-01"));
    Message {
        id: format!("job-{n}"),
        body: format!("{{\"n\":{n}}}").into_bytes(),
        headers,
    }
}

/// Nothing arrives within a short while (absence can only be shown by waiting).
async fn nothing_arrives(consumer: &mut Consumer) {
    let got = tokio::time::timeout(Duration::from_millis(400), consumer.next()).await;
    assert!(got.is_err(), "a delivery arrived beyond the prefetch");
}

async fn prefetch_bounds_unacked_deliveries(broker: &Broker) {
    for n in 0..5 {
        broker.publish_job(&message(n)).await.unwrap();
    }
    let jobs = broker.topology().jobs();
    let mut consumer = broker.consume(&jobs, 2).await.unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    let second = consumer.next().await.unwrap().unwrap();
    assert_eq!((first.id.as_str(), second.id.as_str()), ("job-0", "job-1"));
    assert_eq!(first.body, message(0).body);
    assert_eq!(
        first.headers.get("traceparent"),
        message(0).headers.get("traceparent")
    );
    assert_eq!(first.attempt(), 1);
    nothing_arrives(&mut consumer).await;
    first.ack().await.unwrap();
    let third = consumer.next().await.unwrap().unwrap();
    assert_eq!(third.id, "job-2");
    // Given back, a delivery comes again (not necessarily next), marked redelivered.
    second.requeue().await.unwrap();
    third.ack().await.unwrap();
    let mut seen = Vec::new();
    loop {
        let d = consumer.next().await.unwrap().unwrap();
        seen.push(d.id.clone());
        if d.id == "job-1" {
            assert!(d.redelivered);
            d.ack().await.unwrap();
            break;
        }
        assert!(seen.len() <= 3, "job-1 never came back: {seen:?}");
        d.ack().await.unwrap();
    }
}

async fn retries_come_back_with_their_attempt_and_dead_letters_keep_the_reason(broker: &Broker) {
    let t = broker.topology().clone();
    broker.publish_job(&message(7)).await.unwrap();
    let mut jobs = broker.consume(&t.jobs(), 1).await.unwrap();
    let d = jobs.next().await.unwrap().unwrap();
    broker.publish_retry(&d.to_message(), 1).await.unwrap();
    d.ack().await.unwrap();
    let back = jobs.next().await.unwrap().unwrap();
    assert_eq!(back.id, "job-7");
    assert_eq!(back.attempt(), 2);
    broker
        .publish_dead(&back.to_message(), "not_found: no such tag")
        .await
        .unwrap();
    back.ack().await.unwrap();
    let mut dead = broker.consume(&t.dead(), 1).await.unwrap();
    let d = dead.next().await.unwrap().unwrap();
    assert_eq!(d.id, "job-7");
    assert_eq!(
        d.headers.get(REASON_HEADER).map(String::as_str),
        Some("not_found: no such tag")
    );
    d.ack().await.unwrap();
}

async fn events_reach_the_committer_queue(broker: &Broker) {
    let t = broker.topology().clone();
    broker
        .publish_event("job.copied", &message(1))
        .await
        .unwrap();
    broker
        .publish_event("job.failed", &message(2))
        .await
        .unwrap();
    let mut committer = broker.consume(&t.committer(), 10).await.unwrap();
    let a = committer.next().await.unwrap().unwrap();
    let b = committer.next().await.unwrap().unwrap();
    assert_eq!((a.id.as_str(), b.id.as_str()), ("job-1", "job-2"));
    a.ack().await.unwrap();
    b.ack().await.unwrap();
    let depths = broker.depths().await.unwrap();
    let committer_depth = depths.iter().find(|d| d.name == t.committer()).unwrap();
    assert_eq!(committer_depth.ready, 0);
}

/// Deletes the test's queues once it passed.
async fn tear_down(broker: Broker) {
    if let Broker::Amqp(b) = broker {
        b.delete_topology().await.unwrap();
    }
}

#[tokio::test]
async fn amqp_prefetch_ack_and_redelivery() {
    let broker = amqp("prefetch").await;
    prefetch_bounds_unacked_deliveries(&broker).await;
    tear_down(broker).await;
}

#[tokio::test]
async fn memory_prefetch_ack_and_redelivery() {
    prefetch_bounds_unacked_deliveries(&memory()).await;
}

#[tokio::test]
async fn amqp_retry_and_dead_letter() {
    let broker = amqp("retry").await;
    retries_come_back_with_their_attempt_and_dead_letters_keep_the_reason(&broker).await;
    tear_down(broker).await;
}

#[tokio::test]
async fn memory_retry_and_dead_letter() {
    retries_come_back_with_their_attempt_and_dead_letters_keep_the_reason(&memory()).await;
}

#[tokio::test]
async fn amqp_events() {
    let broker = amqp("events").await;
    events_reach_the_committer_queue(&broker).await;
    tear_down(broker).await;
}

#[tokio::test]
async fn memory_events() {
    events_reach_the_committer_queue(&memory()).await;
}

#[tokio::test]
async fn amqp_unroutable_publish_is_an_error() {
    let broker = amqp("unroutable").await;
    let err = broker
        .publish_event("nobody.listens", &message(1))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Refused(_)), "{err}");
    tear_down(broker).await;
}

#[tokio::test]
async fn amqp_depths_name_every_queue() {
    let broker = amqp("depths").await;
    broker.publish_job(&message(1)).await.unwrap();
    let t = broker.topology().clone();
    let depths = broker.depths().await.unwrap();
    let names: Vec<&str> = depths.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert_eq!(depths[0].name, t.jobs());
    assert_eq!(depths[0].ready, 1);
    tear_down(broker).await;
}

#[tokio::test]
async fn a_broker_url_password_never_appears_in_errors() {
    let password = "pw-5b1f0c";
    let port = image_mirror_testkit::ports::free_port();
    let url = format!("amqp://guest:{password}@127.0.0.1:{port}/%2f");
    let once = image_mirror_common::retry::RetryPolicy::new(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_millis(10),
        1,
    );
    let err = match AmqpBroker::connect_with(&url, Topology::default(), once).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("connected to a closed port"),
    };
    assert!(!err.contains(password), "{err}");
    assert!(err.contains("guest:***@127.0.0.1"), "{err}");
}

/// An event no queue is bound for is refused, as is one for a queue that is gone: both
/// adapters, the same way.
async fn what_cannot_be_routed_is_refused(
    broker: &Broker,
    delete_committer: impl std::future::Future<Output = ()>,
) {
    let unbound = broker.publish_event("job.copied.twice", &message(1)).await;
    assert!(
        matches!(unbound, Err(QueueError::Refused(_))),
        "{unbound:?}"
    );
    broker
        .publish_event("job.copied", &message(2))
        .await
        .unwrap();
    delete_committer.await;
    let gone = broker.publish_event("job.copied", &message(3)).await;
    assert!(matches!(gone, Err(QueueError::Refused(_))), "{gone:?}");
}

#[tokio::test]
async fn memory_refuses_what_cannot_be_routed() {
    let broker = memory();
    let Broker::Memory(m) = &broker else {
        unreachable!()
    };
    let committer = broker.topology().committer();
    what_cannot_be_routed_is_refused(&broker, async { m.delete_queue(&committer) }).await;
}

#[tokio::test]
async fn amqp_refuses_what_cannot_be_routed() {
    let broker = amqp("unroutable").await;
    let committer = broker.topology().committer();
    let url = rabbitmq::amqp_url();
    let topology = broker.topology().clone();
    what_cannot_be_routed_is_refused(&broker, async move {
        let other = AmqpBroker::connect(&url, topology).await.unwrap();
        other.delete_queue(&committer).await.unwrap();
        other.close().await;
    })
    .await;
    tear_down(broker).await;
}

#[tokio::test]
async fn amqp_retry_delays_are_the_topology_s_and_one_prefix_has_one_set() {
    use image_mirror_queue::JobRetries;
    let delays = JobRetries::new(vec![Duration::from_millis(200), Duration::from_millis(300)]);
    let topology = prefix("delays").with_retries(delays.unwrap());
    let url = rabbitmq::amqp_url();
    let broker = Broker::Amqp(Box::new(
        AmqpBroker::connect(&url, topology.clone()).await.unwrap(),
    ));
    assert_eq!(broker.topology().retries().max_attempts(), 3);
    broker.publish_job(&message(9)).await.unwrap();
    let mut jobs = broker.consume(&topology.jobs(), 1).await.unwrap();
    let d = jobs.next().await.unwrap().unwrap();
    // The second delay queue holds it 300 ms, then it is back with its attempt.
    broker.publish_retry(&d.to_message(), 2).await.unwrap();
    d.ack().await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(10), jobs.next())
        .await
        .expect("the retry came back")
        .unwrap()
        .unwrap();
    assert_eq!(back.attempt(), 3);
    // No third delay: the attempts are spent.
    let err = broker
        .publish_retry(&back.to_message(), 3)
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Refused(_)), "{err}");
    back.ack().await.unwrap();
    // Another role on the same prefix with other delays is refused by RabbitMQ, at once.
    let other = AmqpBroker::connect(&url, Topology::new(&prefix_of(&topology))).await;
    let err = other.err().expect("other delays on one prefix").to_string();
    assert!(err.contains("x-message-ttl"), "{err}");
    tear_down(broker).await;
}

/// The prefix of a topology's names.
fn prefix_of(topology: &Topology) -> String {
    topology.jobs().strip_suffix(".jobs").unwrap().to_owned()
}
