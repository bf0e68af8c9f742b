//! The fleet acts as one (real RabbitMQ, real registries, bytes counted by a request-buffering
//! front before the target): three worker processes send a shared base to a fresh registry
//! once and mount it everywhere else; a worker killed with `kill -9` halfway through a 1 GiB
//! blob leaves its upload to another, which takes the lease within seconds and sends only what
//! the registry did not have.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use image_mirror_common::Outcome;
use image_mirror_testkit::front::hold_chunk_from;
use image_mirror_testkit::http::Logged;
use image_mirror_testkit::images::{self, Blob, Format, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image_lacking;
use image_mirror_testkit::workers::{stop, Deployment};
use image_mirror_testkit::{skopeo, Front, FrontOptions, Registry};

const MIB: u64 = 1024 * 1024;
/// The engine's chunk size for large blobs.
const CHUNK: u64 = 16 * MIB;
const WITHIN: Duration = Duration::from_secs(180);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_image-mirror"))
}

/// Request body bytes of blob uploads the front received.
fn upload_bytes(requests: &[Logged]) -> u64 {
    requests
        .iter()
        .filter(|r| r.target.contains("/blobs/uploads/"))
        .map(|r| r.body_len as u64)
        .sum()
}

/// The start offset of an upload chunk.
fn chunk_start(r: &Logged) -> Option<u64> {
    r.header("content-range")?.split('-').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_send_a_shared_base_to_a_fresh_registry_once() {
    let src = Registry::start();
    let (images, distinct) = images::sharing_base(6, 256 * MIB as usize, 1801);
    for (i, image) in images.iter().enumerate() {
        push_image_lacking(&src.url(), "shared/app", &format!("v{i}"), image).await;
    }
    drop(images);
    let dst = Registry::start();
    let front = Front::start(dst.host(), FrontOptions::default());
    let fleet = Deployment::new(
        binary(),
        "fleet-base",
        &[src.host().to_owned(), front.host()],
    );
    let workers: Vec<Child> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| fleet.worker(w, &[]))
        .collect();
    let list: String = (0..6)
        .map(|i| {
            format!(
                "{}/shared/app {}/mirror/app{i} v{i}\n",
                src.host(),
                front.host()
            )
        })
        .collect();
    fleet.publish(&list);
    for event in fleet.events(6, WITHIN).await {
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
    fleet.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_halfway_through_a_1_gib_blob_leaves_the_rest_to_another() {
    let size = 1024 * MIB;
    let src = Registry::start();
    let layer = Blob::new(OCI_LAYER, images::random_bytes(1820, size as usize));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image_lacking(&src.url(), "big/app", "v1", &image).await;
    drop(image);
    let dst = Registry::start();
    let (hook, halfway) = hold_chunk_from(size / 2);
    let front = Front::start(
        dst.host(),
        FrontOptions {
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    let fleet = Deployment::new(
        binary(),
        "fleet-kill",
        &[src.host().to_owned(), front.host()],
    );
    let mut first = fleet.worker("first", &[]);
    fleet.publish(&format!(
        "{}/big/app {}/mirror/big v1\n",
        src.host(),
        front.host()
    ));
    // The first worker is halfway: the chunk it sent last is held by the front.
    let held_at = halfway
        .held
        .recv_timeout(Duration::from_secs(120))
        .expect("the upload reached halfway");
    let second = fleet.worker("second", &[]);
    first.kill().unwrap();
    let killed = Instant::now();
    first.wait().unwrap();

    let events = fleet.events(1, WITHIN).await;
    assert_eq!(events[0].outcome, Outcome::Copied, "{events:?}");
    assert_eq!(
        skopeo::manifest_digest(&format!("{}/mirror/big:v1", dst.host())),
        skopeo::manifest_digest(&format!("{}/big/app:v1", src.host()))
    );
    // The second worker took the lease and asked the registry where the upload stood, within
    // seconds of the kill.
    let asked = halfway
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
    let requests = front.requests();
    let patches: Vec<&Logged> = requests.iter().filter(|r| r.method == "PATCH").collect();
    let again = patches
        .iter()
        .filter(|r| chunk_start(r) == Some(held_at))
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
    fleet.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_whose_upload_the_registry_lost_starts_the_blob_over_once() {
    let size = 128 * MIB;
    let src = Registry::start();
    let layer = Blob::new(OCI_LAYER, images::random_bytes(1830, size as usize));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image_lacking(&src.url(), "big/app", "v1", &image).await;
    drop(image);
    let dst = Registry::start();
    let (hook, halfway) = hold_chunk_from(size / 2);
    let front = Front::start(
        dst.host(),
        FrontOptions {
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    let fleet = Deployment::new(
        binary(),
        "fleet-lost",
        &[src.host().to_owned(), front.host()],
    );
    let mut first = fleet.worker("first", &[]);
    fleet.publish(&format!(
        "{}/big/app {}/mirror/big v1\n",
        src.host(),
        front.host()
    ));
    halfway
        .held
        .recv_timeout(Duration::from_secs(120))
        .expect("the upload reached halfway");
    first.kill().unwrap();
    first.wait().unwrap();
    // The registry loses the session before anyone takes it over.
    let location = front
        .requests()
        .iter()
        .rev()
        .find(|r| r.method == "PATCH")
        .map(|r| r.target.clone())
        .unwrap();
    let cancelled = reqwest::Client::new()
        .delete(format!("{}{location}", dst.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 204);

    let second = fleet.worker("second", &[]);
    let events = fleet.events(1, WITHIN).await;
    assert_eq!(events[0].outcome, Outcome::Copied, "{events:?}");
    assert_eq!(
        skopeo::manifest_digest(&format!("{}/mirror/big:v1", dst.host())),
        skopeo::manifest_digest(&format!("{}/big/app:v1", src.host()))
    );
    // The second worker asked, heard the upload was gone, and sent the blob from byte zero,
    // once.
    let requests = front.requests();
    let from_zero = requests
        .iter()
        .filter(|r| r.method == "PATCH" && chunk_start(r) == Some(0))
        .count();
    assert_eq!(from_zero, 2, "the first worker's start and the second's");
    stop(second);
    fleet.tear_down().await;
}
