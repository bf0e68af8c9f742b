//! The target record: a run soon after another asks only the sources, and the target is
//! asked again whenever the source answers another digest or the record is off or too old.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use image_mirror_registry::{ClientOptions, RegistryClient};
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{crane, Registry};
use image_mirror_worker::copy::TargetRecord;
use image_mirror_worker::{CopyEngine, CopyOptions, CopyOutcome};

mod support;

use support::{fast_retries, reference};

/// A fresh engine (as a new process) trusting the record at `path` for `max_age`.
fn engine(hosts: &[&str], path: &Path, max_age: Duration) -> CopyEngine {
    let client = RegistryClient::new(ClientOptions {
        insecure_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        retry: fast_retries(),
        ..ClientOptions::default()
    })
    .unwrap();
    CopyEngine::new(client, CopyOptions::default())
        .with_target_record(TargetRecord::persistent(path, max_age))
}

/// The requests `registry` answered for `repo`'s manifests since `from` (of its log), once a
/// marker request sent after them has been logged too (the log is written on its own time).
async fn manifest_requests(
    registry: &Registry,
    repo: &str,
    from: usize,
    marker: &str,
) -> Vec<String> {
    let url = format!("{}/v2/{marker}/tags/list", registry.url());
    let _ = reqwest::get(url).await;
    assert!(registry.wait_for_request(|r| r.contains(marker), Duration::from_secs(10)));
    registry.requests()[from..]
        .iter()
        .filter(|r| r.contains(&format!("/v2/{repo}/manifests/")))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_soon_after_another_asks_only_the_source_until_the_source_moves() {
    let (src, dst) = (Registry::start(), Registry::start());
    let hosts = [src.host(), dst.host()];
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("target-tags");
    let hour = Duration::from_secs(3600);
    let (first, second) = (images::oci_index(8100), images::oci_manifest(8101));
    push_image(&src.url(), "up/app", "v1", &first).await;
    let from = reference(&format!("{}/up/app:v1", src.host()));
    let to = reference(&format!("{}/mirror/app:v1", dst.host()));

    let copied = engine(&hosts, &record, hour)
        .copy(&from, &to)
        .await
        .unwrap();
    assert_eq!(copied.outcome, CopyOutcome::Copied);

    // A new process: the target is not asked, the source is.
    let (at_dst, at_src) = (dst.requests().len(), src.requests().len());
    let again = engine(&hosts, &record, hour)
        .copy(&from, &to)
        .await
        .unwrap();
    assert_eq!(again.outcome, CopyOutcome::AlreadyPresent);
    assert_eq!(
        manifest_requests(&dst, "mirror/app", at_dst, "marker-1").await,
        Vec::<String>::new(),
        "the target was asked although the record saw its tag an instant ago"
    );
    assert_eq!(
        manifest_requests(&src, "up/app", at_src, "marker-1")
            .await
            .len(),
        1,
        "one HEAD of the source"
    );

    // The record off: the target is asked.
    let at_dst = dst.requests().len();
    let asked = engine(&hosts, &record, Duration::ZERO)
        .copy(&from, &to)
        .await
        .unwrap();
    assert_eq!(asked.outcome, CopyOutcome::AlreadyPresent);
    let heads = manifest_requests(&dst, "mirror/app", at_dst, "marker-2").await;
    assert_eq!(heads, ["HEAD /v2/mirror/app/manifests/v1".to_owned()]);

    // The source moves: the record no longer names what the source answers, so the target is
    // asked, and the new image copied and recorded.
    push_image(&src.url(), "up/app", "v1", &second).await;
    let at_dst = dst.requests().len();
    let moved = engine(&hosts, &record, hour).copy(&from, &to).await;
    let report = moved.unwrap();
    assert_eq!(
        report.outcome,
        CopyOutcome::Drifted,
        "kept by the drift policy"
    );
    assert!(manifest_requests(&dst, "mirror/app", at_dst, "marker-3")
        .await
        .iter()
        .any(|r| r.starts_with("HEAD /v2/mirror/app/manifests/v1")));
    assert_eq!(&crane::digest(&format!("{to}")), first.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_older_than_its_age_is_not_trusted() {
    let (src, dst) = (Registry::start(), Registry::start());
    let hosts = [src.host(), dst.host()];
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("target-tags");
    let image = images::oci_manifest(8102);
    push_image(&src.url(), "up/app", "v1", &image).await;
    push_image(&dst.url(), "mirror/app", "v1", &image).await;
    let from = reference(&format!("{}/up/app:v1", src.host()));
    let to = reference(&format!("{}/mirror/app:v1", dst.host()));
    // Seen two hours ago, trusted for one.
    let then = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7200;
    std::fs::write(
        &record,
        format!("{then} {} mirror/app v1 {}\n", dst.host(), image.digest()),
    )
    .unwrap();
    let at_dst = dst.requests().len();
    let hour = Duration::from_secs(3600);
    let report = engine(&hosts, &record, hour)
        .copy(&from, &to)
        .await
        .unwrap();
    assert_eq!(report.outcome, CopyOutcome::AlreadyPresent);
    assert_eq!(
        manifest_requests(&dst, "mirror/app", at_dst, "marker").await,
        ["HEAD /v2/mirror/app/manifests/v1".to_owned()]
    );
    // And the answer renews it: a fresh line.
    let text = std::fs::read_to_string(&record).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}
