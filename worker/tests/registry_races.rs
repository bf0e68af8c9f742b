//! A registry that loses track of a blob while a manifest is pushed (as it does when two
//! writers link the same blob at once) gets the blob again and the push again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use image_mirror_common::ImageRef;
use image_mirror_registry::{ClientOptions, RegistryClient, RetryPolicy};
use image_mirror_testkit::front::Hook;
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, Front, FrontOptions, Registry};
use image_mirror_worker::{CopyEngine, CopyOptions, CopyOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_answered_blob_unknown_after_every_blob_was_stored_is_repaired() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = images::oci_index(801);
    push_image(&src.url(), "up/app", "v1", &image).await;
    // The race, forced: just before the first image manifest is pushed, the registry loses
    // the link of that manifest's first layer, as a second writer rewriting it would.
    let storage = dst.storage().to_owned();
    let broken = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&broken);
    let hook: Hook = Arc::new(move |request| {
        let image_manifest = request.method == "PUT"
            && request.path().contains("/manifests/sha256:")
            && request.header("content-type") == Some(images::OCI_MANIFEST);
        if !image_manifest || seen.fetch_add(1, Ordering::SeqCst) > 0 {
            return None;
        }
        let manifest: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        let repo = request.path()["/v2/".len()..]
            .split("/manifests/")
            .next()
            .unwrap();
        let link = storage
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_layers/sha256")
            .join(layer.trim_start_matches("sha256:"))
            .join("link");
        std::fs::remove_file(&link).unwrap();
        None
    });
    let front = Front::start(
        dst.host(),
        FrontOptions {
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    let client = RegistryClient::new(ClientOptions {
        insecure_hosts: vec![src.host().to_owned(), front.host()],
        retry: RetryPolicy {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retries: 3,
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let engine = CopyEngine::new(client, CopyOptions::default());
    let to = format!("{}/mirror/app:v1", front.host());
    let report = engine
        .copy(
            &format!("{}/up/app:v1", src.host())
                .parse::<ImageRef>()
                .unwrap(),
            &to.parse::<ImageRef>().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, CopyOutcome::Copied);
    assert!(broken.load(Ordering::SeqCst) >= 1);
    // The lost blob went again: one more blob sent than the image has, one more push.
    assert_eq!(report.blobs_copied as usize, image.blobs.len() + 1);
    assert_eq!(report.manifests_pushed as usize, image.manifests.len());
    let refused: Vec<_> = dst
        .log()
        .into_iter()
        .filter(|l| l.contains("MANIFEST_BLOB_UNKNOWN") || l.contains("blob unknown"))
        .collect();
    assert!(!refused.is_empty(), "the registry never refused the push");
    assert_eq!(&skopeo::manifest_digest(&to), image.digest());
    for child in &image.manifests {
        let r = format!("{}/mirror/app@{}", front.host(), child.digest);
        assert_eq!(skopeo::manifest_digest(&r), child.digest);
    }
}
