//! The fleet's coordination on a real RabbitMQ: a blob lease one connection holds at a time
//! and the broker frees with its connection, the checkpoint a successor reads, nothing left
//! on the broker once a blob landed, and shared blob locations, heard late and after a break.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use image_mirror_common::lesson::Lesson;
use image_mirror_common::Digest;
use image_mirror_queue::coordination::{BlobLocation, BlobState, Coordinator, FleetNews, ReadFrom};
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::rabbitmq;

fn topology(test: &str) -> Topology {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Topology::new(&format!("test.fleet.{test}.{unique}"))
}

async fn member(t: &Topology) -> Coordinator {
    Coordinator::connect(&rabbitmq::amqp_url(), t.clone())
        .await
        .unwrap()
}

const REGISTRY: &str = "registry.test:5000";

#[tokio::test]
async fn one_connection_holds_a_lease_and_its_end_frees_it() {
    let t = topology("lease");
    let (a, b) = (member(&t).await, member(&t).await);
    let blob = Digest::sha256_of(b"base layer");
    let held = a.try_lease(REGISTRY, &blob).await.unwrap();
    assert!(held.is_some());
    assert!(b.try_lease(REGISTRY, &blob).await.unwrap().is_none());
    // Another blob, or the same blob in another registry, is another lease.
    let other = Digest::sha256_of(b"other layer");
    assert!(b.try_lease(REGISTRY, &other).await.unwrap().is_some());
    assert!(b.try_lease("other.test", &blob).await.unwrap().is_some());

    // Its holder's connection ends without letting go: the broker frees it.
    std::mem::forget(held);
    a.close().await;
    let taken = b.try_lease(REGISTRY, &blob).await.unwrap();
    assert!(taken.is_some(), "the lease outlived its connection");
    taken.unwrap().landed().await.unwrap();
    b.close().await;
}

/// Whether the broker has a queue named `name` (a passive declaration on a connection of
/// its own).
async fn exists(name: &str) -> bool {
    let connection = lapin::Connection::connect(
        &rabbitmq::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    // An exclusive queue of another connection exists too, and answers RESOURCE_LOCKED.
    let found = match channel
        .queue_declare(name.into(), passive, Default::default())
        .await
    {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("NOT_FOUND"),
    };
    let _ = connection.close(200, "bye".into()).await;
    found
}

#[tokio::test]
async fn a_landed_blob_leaves_nothing_on_the_broker() {
    let t = topology("landed");
    let a = member(&t).await;
    // Sent whole: the lease is all there was.
    let small = Digest::sha256_of(b"small layer");
    let lease = a.try_lease(REGISTRY, &small).await.unwrap().unwrap();
    assert!(exists(&t.blob_lease(REGISTRY, &small)).await);
    lease.landed().await.unwrap();
    assert!(!exists(&t.blob_lease(REGISTRY, &small)).await);
    assert!(!exists(&t.blob_checkpoint(REGISTRY, &small)).await);

    // Sent in chunks: its checkpoint goes with it.
    let big = Digest::sha256_of(b"chunked layer");
    let lease = a.try_lease(REGISTRY, &big).await.unwrap().unwrap();
    assert_eq!(lease.state().await.unwrap(), None);
    lease
        .save_upload("org/app", "http://x/u", 16)
        .await
        .unwrap();
    assert!(exists(&t.blob_checkpoint(REGISTRY, &big)).await);
    lease.landed().await.unwrap();
    assert!(!exists(&t.blob_lease(REGISTRY, &big)).await);
    assert!(!exists(&t.blob_checkpoint(REGISTRY, &big)).await);

    // A hundred leases in a row reuse the coordinator's channels, and leave nothing either.
    for i in 0..100 {
        let d = Digest::sha256_of(format!("layer {i}").as_bytes());
        a.try_lease(REGISTRY, &d)
            .await
            .unwrap()
            .unwrap()
            .landed()
            .await
            .unwrap();
    }
    assert!(!exists(&t.blob_lease(REGISTRY, &Digest::sha256_of(b"layer 99"))).await);
    a.delete_locations().await.unwrap();
    a.close().await;
}

#[tokio::test]
async fn a_successor_reads_where_the_upload_stood() {
    let t = topology("state");
    let blob = Digest::sha256_of(b"big layer");
    let a = member(&t).await;
    let lease = a.try_lease(REGISTRY, &blob).await.unwrap().unwrap();
    assert_eq!(lease.state().await.unwrap(), None);
    for offset in [16_u64, 32, 48] {
        lease
            .save_upload(
                "org/app",
                &format!("http://{REGISTRY}/u?n={offset}"),
                offset,
            )
            .await
            .unwrap();
    }
    // Killed: the connection ends, the last checkpoint stays.
    std::mem::forget(lease);
    a.close().await;

    let b = member(&t).await;
    let lease = b.try_lease(REGISTRY, &blob).await.unwrap().unwrap();
    let expected = BlobState::Uploading {
        repository: "org/app".into(),
        location: format!("http://{REGISTRY}/u?n=48"),
        offset: 48,
    };
    assert_eq!(lease.state().await.unwrap(), Some(expected.clone()));
    // Reading it leaves it for the next one.
    assert_eq!(lease.state().await.unwrap(), Some(expected));
    lease.landed().await.unwrap();

    // Landed: the next holder finds no checkpoint.
    let lease = b.try_lease(REGISTRY, &blob).await.unwrap().unwrap();
    assert_eq!(lease.state().await.unwrap(), None);
    lease
        .save_upload("org/other", "http://x/u", 16)
        .await
        .unwrap();
    lease.abandon().await.unwrap();
    let lease = b.try_lease(REGISTRY, &blob).await.unwrap().unwrap();
    assert_eq!(
        lease.state().await.unwrap(),
        None,
        "an abandoned upload's checkpoint stays"
    );
    lease.landed().await.unwrap();
    b.close().await;
}

fn location(n: u8) -> BlobLocation {
    BlobLocation {
        registry: REGISTRY.into(),
        repository: format!("org/app{n}"),
        digest: Digest::sha256_of(&[n]),
    }
}

async fn hear_news(feed: &mut image_mirror_queue::coordination::LocationFeed) -> FleetNews {
    tokio::time::timeout(Duration::from_secs(10), feed.next())
        .await
        .expect("news within 10 s")
        .expect("the feed is open")
}

async fn hear(feed: &mut image_mirror_queue::coordination::LocationFeed) -> BlobLocation {
    match hear_news(feed).await {
        FleetNews::Location(l) => l,
        other => panic!("expected a location, heard {other:?}"),
    }
}

#[tokio::test]
async fn every_member_hears_where_blobs_are_even_one_that_joins_later() {
    let t = topology("locations");
    let (a, b) = (member(&t).await, member(&t).await);
    let mut heard_by_a = a.listen(ReadFrom::LookBack).await.unwrap();
    b.announce(&location(1)).await.unwrap();
    assert_eq!(hear(&mut heard_by_a).await, location(1));

    // A member that joins afterwards hears what was said before it.
    let c = member(&t).await;
    let mut heard_by_c = c.listen(ReadFrom::LookBack).await.unwrap();
    assert_eq!(hear(&mut heard_by_c).await, location(1));

    // Listening again from where a feed stopped hears only what came after.
    let resume = heard_by_a.resume();
    assert!(matches!(resume, ReadFrom::After(_)));
    drop(heard_by_a);
    b.announce(&location(2)).await.unwrap();
    let mut again = a.listen(resume).await.unwrap();
    assert_eq!(hear(&mut again).await, location(2));
    assert_eq!(hear(&mut heard_by_c).await, location(2));

    // What a registry taught one member travels the same way.
    let lesson = Lesson {
        registry: REGISTRY.into(),
        max_request: Some(4 << 20),
        stuck_range: false,
        refuses_sparse_index: true,
    };
    b.teach(&lesson).await.unwrap();
    assert_eq!(
        hear_news(&mut heard_by_c).await,
        FleetNews::UploadLimits {
            upload_limits: lesson
        }
    );

    a.delete_locations().await.unwrap();
    for m in [a, b, c] {
        m.close().await;
    }
}

#[tokio::test]
async fn a_broker_that_cannot_serve_the_stream_yet_is_joined_and_each_call_fails_at_once() {
    // A queue of another kind under the stream's name stands for a stream the broker cannot
    // serve (a node just started brings its streams back seconds after its queues).
    let t = topology("no-stream");
    let connection = lapin::Connection::connect(
        &rabbitmq::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            t.blob_locations().as_str().into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();

    let c = Coordinator::connect(&rabbitmq::amqp_url(), t.clone())
        .await
        .expect("the coordinator is there, though the stream is not");
    let started = std::time::Instant::now();
    assert!(c.announce(&location(1)).await.is_err());
    assert!(c.listen(ReadFrom::LookBack).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "calls wait instead of failing at once"
    );
    c.close().await;
    channel
        .queue_delete(
            t.blob_locations().as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "bye".into()).await;
}
