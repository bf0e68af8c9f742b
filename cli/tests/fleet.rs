//! The fleet acts as one (real RabbitMQ, real registries, bytes counted by a request-buffering
//! front before the target): three worker processes send a shared base to a fresh registry
//! once and mount it everywhere else; a worker killed with `kill -9` halfway through a 1 GiB
//! blob leaves its upload to another, which takes the lease within seconds and sends only what
//! the registry did not have; when the registry has lost that upload, the blob starts over,
//! once, unless the first worker's closing request went through (then nothing is sent); a
//! registry's request limit, or its refusal of a sparse index, learned by one worker, is known
//! to a worker that joins later, which pays no refusal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use image_mirror_common::Outcome;
use image_mirror_testkit::fleet::{self, chunk_start, upload_bytes, HeldUpload, BIG};
use image_mirror_testkit::http::Logged;
use image_mirror_testkit::images::{self, Blob, Format, Platform, OCI_LAYER};
use image_mirror_testkit::push::{push_blob, push_image_lacking};
use image_mirror_testkit::workers::{stop, Deployment};
use image_mirror_testkit::{process, skopeo, Front, FrontOptions, Implementation, Quirk, Registry};

const MIB: u64 = 1024 * 1024;
/// The engine's chunk size for large blobs.
const CHUNK: u64 = 16 * MIB;
const WITHIN: Duration = Duration::from_secs(180);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_image-mirror"))
}

/// The target's `mirror/big:v1` is the source's image.
fn big_is_digest_exact(src: &Registry, dst: &Registry) {
    assert_eq!(
        skopeo::manifest_digest(&format!("{}/mirror/big:v1", dst.host())),
        skopeo::manifest_digest(&format!("{}/{BIG}:v1", src.host()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_send_a_shared_base_to_a_fresh_registry_once() {
    let src = Registry::start();
    let distinct = fleet::push_sharing_base(&src, 6, 256 * MIB as usize, 1801).await;
    let dst = Registry::start();
    let front = Front::start(dst.host(), FrontOptions::default());
    let deployment = Deployment::new(
        binary(),
        "fleet-base",
        &[src.host().to_owned(), front.host()],
    );
    let workers: Vec<_> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| deployment.worker(w, &[]))
        .collect();
    deployment.publish(&fleet::sharing_base_list(&src, &front.host(), 6));
    for event in deployment.events(6, WITHIN).await {
        assert_eq!(event.outcome, Outcome::Copied, "{event:?}");
    }

    // Every blob crossed the wire to the registry once: the base once, mounted five times.
    let sent = upload_bytes(&front.requests());
    assert_eq!(sent, distinct, "{} MiB sent", sent / MIB);
    for i in 0..6 {
        assert_eq!(
            skopeo::manifest_digest(&format!("{}/mirror/app{i}:v{i}", dst.host())),
            skopeo::manifest_digest(&format!("{}/shared/app:v{i}", src.host()))
        );
    }
    for w in workers {
        stop(w);
    }
    deployment.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_halfway_through_a_1_gib_blob_leaves_the_rest_to_another() {
    let size = 1024 * MIB;
    let src = Registry::start();
    fleet::push_big(&src, size, 1820).await;
    // The first worker is halfway: the chunk it sent last is held by the front.
    let mut up = HeldUpload::start(binary(), "fleet-kill", &src, size, &[]);
    let second = up.fleet.worker("second", &[]);
    up.first.kill().unwrap();
    let killed = Instant::now();
    up.first.wait().unwrap();

    let events = up.fleet.events(1, WITHIN).await;
    assert_eq!(events[0].outcome, Outcome::Copied, "{events:?}");
    big_is_digest_exact(&src, &up.dst);
    // The second worker took the lease and asked the registry where the upload stood, within
    // seconds of the kill.
    let asked = up
        .halfway
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|(at, method, target)| {
            *at > killed && method == "GET" && target.contains("/blobs/uploads/")
        })
        .map(|(at, ..)| at.duration_since(killed))
        .expect("the second worker resumed the upload");
    assert!(
        asked < Duration::from_secs(10),
        "lease taken after {asked:?}"
    );
    // It went on from where the registry stood, the held chunk's start: that chunk is all
    // that crossed twice.
    let requests = up.front.requests();
    let patches: Vec<&Logged> = requests.iter().filter(|r| r.method == "PATCH").collect();
    let again = patches
        .iter()
        .filter(|r| chunk_start(r) == Some(up.held_at))
        .count();
    assert_eq!(
        again, 2,
        "the held chunk, then the same chunk from the second worker"
    );
    let sent: u64 = patches.iter().map(|r| r.body_len as u64).sum();
    assert!(
        sent <= size + CHUNK,
        "{} MiB sent for a 1024 MiB blob",
        sent / MIB
    );
    stop(second);
    up.fleet.tear_down().await;
}

/// The first worker killed with `kill -9`, then the session of its upload closed at the
/// registry (straight, not through the front).
async fn killed_and_its_session_closed(mut up: HeldUpload) -> HeldUpload {
    up.first.kill().unwrap();
    up.first.wait().unwrap();
    let location = up
        .front
        .requests()
        .iter()
        .rev()
        .find(|r| r.method == "PATCH")
        .map(|r| r.target.clone())
        .unwrap();
    let closed = reqwest::Client::new()
        .delete(format!("{}{location}", up.dst.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 204);
    up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_whose_upload_the_registry_lost_starts_the_blob_over_once() {
    let size = 128 * MIB;
    let src = Registry::start();
    fleet::push_big(&src, size, 1830).await;
    let up = HeldUpload::start(binary(), "fleet-lost", &src, size, &[]);
    // The registry loses the session before anyone takes it over.
    let up = killed_and_its_session_closed(up).await;

    let second = up.fleet.worker("second", &[]);
    let events = up.fleet.events(1, WITHIN).await;
    assert_eq!(events[0].outcome, Outcome::Copied, "{events:?}");
    big_is_digest_exact(&src, &up.dst);
    // The second worker asked, heard the upload was gone, and sent the blob from byte zero,
    // once.
    let from_zero = up
        .front
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && chunk_start(r) == Some(0))
        .count();
    assert_eq!(from_zero, 2, "the first worker's start and the second's");
    stop(second);
    up.fleet.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_finds_the_blob_its_predecessor_finished_and_sends_nothing() {
    a_successor_finds_the_landed_blob(Implementation::Distribution2, "fleet-landed-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_finds_the_blob_its_predecessor_finished_on_distribution_3() {
    a_successor_finds_the_landed_blob(Implementation::Distribution3, "fleet-landed-3").await;
}

async fn a_successor_finds_the_landed_blob(implementation: Implementation, name: &str) {
    let size = 128 * MIB;
    let src = Registry::start();
    fleet::push_big(&src, size, 1850).await;
    let up = HeldUpload::start_on(implementation, binary(), name, &src, size, &[]);
    // The first worker's closing request went through before it died: the registry closed
    // the session and holds the blob (done here, straight to the registry).
    let up = killed_and_its_session_closed(up).await;
    let http = reqwest::Client::new();
    let blob = Blob::new(OCI_LAYER, images::random_bytes(1850, size as usize));
    push_blob(&http, &up.dst.url(), "mirror/big", &blob.digest, blob.bytes).await;
    let sent_before = upload_bytes(&up.front.requests());

    let second = up.fleet.worker("second", &[]);
    let events = up.fleet.events(1, WITHIN).await;
    assert_eq!(events[0].outcome, Outcome::Copied, "{events:?}");
    big_is_digest_exact(&src, &up.dst);
    // It asked where the upload stood, heard it was gone, found the blob, and sent nothing.
    let sent_after = upload_bytes(&up.front.requests());
    assert_eq!(
        sent_after - sent_before,
        0,
        "{} MiB sent again",
        (sent_after - sent_before) / MIB
    );
    stop(second);
    up.fleet.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_limit_one_worker_learned_costs_the_next_worker_nothing() {
    let src = Registry::start();
    for i in 0..2u64 {
        let layer = Blob::new(OCI_LAYER, images::random_bytes(1840 + i, 10 * MIB as usize));
        let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
        push_image_lacking(&src.url(), &format!("up/app{i}"), "v1", &image).await;
    }
    let dst = Registry::start();
    // GHCR's cap: a request body over 4 MiB is refused (416).
    let front = Front::start(dst.host(), FrontOptions::quirk(Quirk::Ghcr));
    let deployment = Deployment::new(
        binary(),
        "fleet-limits",
        &[src.host().to_owned(), front.host()],
    );
    let entry = |i: u64| {
        format!(
            "{}/up/app{i} {}/mirror/app{i} v1\n",
            src.host(),
            front.host()
        )
    };

    // The first worker sends its 10 MiB layer whole, is refused once, learns the cap.
    let first = deployment.worker("first", &[]);
    deployment.publish(&entry(0));
    let event = deployment.events(1, WITHIN).await.remove(0);
    assert_eq!(event.outcome, Outcome::Copied, "{event:?}");
    assert_eq!(front.quirk_refusals(), 1, "the first blob pays once");

    // A worker joining later hears it from the fleet, and goes alone after the first stops.
    let (second, logs) = deployment.worker_logged("second", &[]);
    let heard = process::wait_for_line_within(
        logs,
        "the fleet says",
        "the second worker",
        Duration::from_secs(20),
    );
    assert!(heard.contains("at most 4 MiB"), "{heard}");
    stop(first);
    deployment.publish(&entry(1));
    let event = deployment.events(1, WITHIN).await.remove(0);
    assert_eq!(event.outcome, Outcome::Copied, "{event:?}");
    assert_eq!(
        front.quirk_refusals(),
        1,
        "the second worker's blob was refused too: the limit did not travel"
    );
    for i in 0..2 {
        assert_eq!(
            skopeo::manifest_digest(&format!("{}/mirror/app{i}:v1", dst.host())),
            skopeo::manifest_digest(&format!("{}/up/app{i}:v1", src.host()))
        );
    }
    stop(second);
    deployment.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_index_refusal_one_worker_paid_costs_the_next_worker_nothing() {
    let src = Registry::start();
    for i in 0..2u64 {
        let image = images::oci_index(1850 + i);
        push_image_lacking(&src.url(), &format!("up/multi{i}"), "v1", &image).await;
    }
    // distribution 2.8 refuses an index whose other platforms it does not hold.
    let dst = Registry::start();
    let front = Front::start(dst.host(), FrontOptions::default());
    let deployment = Deployment::new(
        binary(),
        "fleet-sparse",
        &[src.host().to_owned(), front.host()],
    );
    let entry = |i: u64| {
        format!(
            "{}/up/multi{i} {}/mirror/multi{i} v1\n",
            src.host(),
            front.host()
        )
    };
    // Pushes of an index under its tag, sparse or rewritten.
    let tag_pushes = |i: u64| {
        front
            .requests()
            .iter()
            .filter(|r| {
                r.method == "PUT" && r.target == format!("/v2/mirror/multi{i}/manifests/v1")
            })
            .count()
    };
    let platforms = ["--platforms", "linux/amd64"];

    // The first worker pushes the source's index, is refused, and pushes a rewritten one.
    let first = deployment.worker("first", &platforms);
    deployment.publish(&entry(0));
    let event = deployment.events(1, WITHIN).await.remove(0);
    assert_eq!(event.outcome, Outcome::Copied, "{event:?}");
    let rewritten = event.platform_subset.and_then(|s| s.rewritten_digest);
    assert!(rewritten.is_some(), "the event names the target's index");
    assert_eq!(tag_pushes(0), 2, "the refusal, then the rewritten index");

    // A worker joining later hears it from the fleet and pushes the rewritten index at once.
    let (second, logs) = deployment.worker_logged("second", &platforms);
    let heard = process::wait_for_line_within(
        logs,
        "the fleet says",
        "the second worker",
        Duration::from_secs(20),
    );
    assert!(heard.contains("sparse indexes"), "{heard}");
    stop(first);
    deployment.publish(&entry(1));
    let event = deployment.events(1, WITHIN).await.remove(0);
    assert_eq!(event.outcome, Outcome::Copied, "{event:?}");
    assert_eq!(
        tag_pushes(1),
        1,
        "the second worker paid the refusal too: it did not travel"
    );
    assert_eq!(
        skopeo::manifest_digest(&format!("{}/mirror/multi1:v1", dst.host())),
        event
            .platform_subset
            .and_then(|s| s.rewritten_digest)
            .unwrap()
    );
    stop(second);
    deployment.tear_down().await;
}
