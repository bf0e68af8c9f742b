//! The fleet's coordination on a real RabbitMQ: a blob lease one connection holds at a time
//! and the broker frees with its connection, the blob state a successor reads, and shared
//! blob locations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use image_mirror_common::queue::coordination::{BlobLocation, BlobState, Coordinator};
use image_mirror_common::queue::topology::Topology;
use image_mirror_common::Digest;
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
    taken.unwrap().landed("org/app").await.unwrap();
    b.close().await;
}

#[tokio::test]
async fn a_successor_reads_where_the_upload_stood_or_where_the_blob_landed() {
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
    lease.landed("org/app").await.unwrap();

    let lease = b.try_lease(REGISTRY, &blob).await.unwrap().unwrap();
    assert_eq!(
        lease.state().await.unwrap(),
        Some(BlobState::Landed {
            repository: "org/app".into()
        })
    );
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
    lease.landed("org/app").await.unwrap();
    b.close().await;
}

#[tokio::test]
async fn every_member_hears_where_blobs_are() {
    let t = topology("locations");
    let (a, b) = (member(&t).await, member(&t).await);
    let mut heard_by_a = a.listen().await.unwrap();
    let mut heard_by_b = b.listen().await.unwrap();
    let location = BlobLocation {
        registry: REGISTRY.into(),
        repository: "org/app".into(),
        digest: Digest::sha256_of(b"layer"),
    };
    b.announce(&location).await.unwrap();
    for feed in [&mut heard_by_a, &mut heard_by_b] {
        let heard = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .unwrap();
        assert_eq!(heard, Some(location.clone()));
    }
    a.delete_exchange().await.unwrap();
    a.close().await;
    b.close().await;
}
