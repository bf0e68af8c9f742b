//! Cut transfers against real registries: an upload cut mid-chunk resumes from the
//! registry's offset (or starts over where the registry cannot say), a cut download resumes
//! with `Range`, an upload that keeps failing is transient, a closing request whose answer
//! was lost finds the blob there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use image_mirror_testkit::http::Request;
use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{
    skopeo, FaultProxy, Faults, Front, FrontOptions, Implementation, Registry,
};
use support::{big_image, engine, reference, registry, MIB};

/// Copies a 256 MiB blob to `dst` through a proxy that cuts the upload once at half the blob.
async fn copy_through_cut_upload(
    buffer_requests: bool,
    implementation: Implementation,
) -> (Registry, FaultProxy, Image, u64) {
    let src = registry(implementation);
    let dst = registry(implementation);
    let size = 256 * MIB;
    let image = big_image(71, size);
    push_image(&src.url(), "big/layer", "1", &image).await;
    let proxy = FaultProxy::start(
        dst.host(),
        Faults {
            cut_upstream_after: Some(size / 2),
            buffer_requests,
            ..Faults::default()
        },
    );
    let engine = engine(&[src.host().to_owned(), proxy.host()]);
    let report = engine
        .copy(
            &reference(&format!("{}/big/layer:1", src.host())),
            &reference(&format!("{}/big/layer:1", proxy.host())),
        )
        .await
        .unwrap();
    assert!(proxy.cut_up_done(), "the proxy never cut the upload");
    assert!(report.resumes >= 1);
    assert_eq!(
        &skopeo::manifest_digest(&format!("{}/big/layer:1", dst.host())),
        image.digest()
    );
    drop(src);
    (dst, proxy, image, size)
}

on_both_registries!(a_cut_upload_resumes_from_the_registry_offset_and_resends_at_most_one_chunk);
async fn a_cut_upload_resumes_from_the_registry_offset_and_resends_at_most_one_chunk(
    implementation: Implementation,
) {
    // A front proxy that buffers requests (as nginx does by default) keeps the registry's
    // upload consistent when the client's connection breaks: the upload goes on from the
    // offset the registry reports.
    let (dst, proxy, _image, size) = copy_through_cut_upload(true, implementation).await;
    let chunk = image_mirror_registry::upload_limits::DEFAULT_CHUNK;
    let overhead = MIB; // headers, the config blob, the manifest
    assert!(
        proxy.bytes_up() <= size + chunk + overhead,
        "sent {} bytes for a {size}-byte blob: {} resent, more than one {chunk}-byte chunk",
        proxy.bytes_up(),
        proxy.bytes_up().saturating_sub(size)
    );
    let sessions = dst
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST") && r.ends_with("/blobs/uploads/"))
        .count();
    assert_eq!(
        sessions, 2,
        "one session per blob: the big one was resumed, not restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_cut_at_a_bare_registry_starts_the_blob_over_and_completes() {
    // Distribution 2.8 keeps the part of a chunk it received before the cut, then refuses the
    // session ("upload resumed at wrong offset"): the blob can only start over.
    let (dst, proxy, _image, size) =
        copy_through_cut_upload(false, Implementation::Distribution2).await;
    assert!(
        proxy.bytes_up() <= 2 * size,
        "sent {} bytes",
        proxy.bytes_up()
    );
    assert!(dst
        .log()
        .iter()
        .any(|l| l.contains("upload resumed at wrong off")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_cut_at_a_bare_distribution_3_goes_on_from_what_it_kept() {
    // Unlike 2.8, distribution 3 keeps the part of a cut chunk it received and reports it:
    // the upload goes on from there in the same session, without starting the blob over.
    let (dst, proxy, _image, size) =
        copy_through_cut_upload(false, Implementation::Distribution3).await;
    let chunk = image_mirror_registry::upload_limits::DEFAULT_CHUNK;
    assert!(
        proxy.bytes_up() <= size + chunk + MIB,
        "sent {} bytes for a {size}-byte blob",
        proxy.bytes_up()
    );
    assert!(dst
        .log()
        .iter()
        .any(|l| l.contains("client disconnected during blob PATCH")));
    let sessions = dst
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST") && r.ends_with("/blobs/uploads/"))
        .count();
    assert_eq!(sessions, 2, "the big blob kept its session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_resumes_with_range() {
    let src = Registry::start();
    let dst = Registry::start();
    let size = 256 * MIB;
    let image = big_image(72, size);
    push_image(&src.url(), "big/layer", "1", &image).await;
    let proxy = FaultProxy::start(
        src.host(),
        Faults {
            cut_downstream_after: Some(size / 2),
            ..Faults::default()
        },
    );
    let engine = engine(&[proxy.host(), dst.host().to_owned()]);
    let report = engine
        .copy(
            &reference(&format!("{}/big/layer:1", proxy.host())),
            &reference(&format!("{}/big/layer:1", dst.host())),
        )
        .await
        .unwrap();
    assert!(proxy.cut_down_done(), "the proxy never cut the download");
    assert!(report.resumes >= 1);
    let chunk = image_mirror_registry::upload_limits::DEFAULT_CHUNK;
    assert!(
        proxy.bytes_down() <= size + chunk + MIB,
        "read {} bytes for a {size}-byte blob",
        proxy.bytes_down()
    );
    assert_eq!(
        &skopeo::manifest_digest(&format!("{}/big/layer:1", dst.host())),
        image.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_keeps_failing_is_transient_as_a_download_is() {
    use image_mirror_testkit::front::Hook;
    use image_mirror_testkit::http::{Reply, Response};
    use image_mirror_testkit::{Front, FrontOptions};
    let src = Registry::start();
    let dst = Registry::start();
    let image = images::oci_manifest(91);
    push_image(&src.url(), "up/app", "1", &image).await;
    // Every request that sends blob bytes gets a 503.
    let hook: Hook = std::sync::Arc::new(|request| {
        let sends = request.path().contains("/blobs/uploads/")
            && matches!(request.method.as_str(), "PUT" | "PATCH");
        sends.then(|| Reply::from(Response::new(503)))
    });
    let front = Front::start(
        dst.host(),
        FrontOptions {
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    let engine = engine(&[src.host().to_owned(), front.host()]);
    let err = engine
        .copy(
            &reference(&format!("{}/up/app:1", src.host())),
            &reference(&format!("{}/mirror/app:1", front.host())),
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("kept failing"), "{err}");
}

on_both_registries!(a_closing_put_whose_answer_was_lost_finds_the_blob_there);
async fn a_closing_put_whose_answer_was_lost_finds_the_blob_there(implementation: Implementation) {
    // The registry closes the upload of a chunked blob, and its answer is lost: the PUT sent
    // again finds no session (404), and the blob, there by its digest, is taken as uploaded.
    let src = registry(implementation);
    let dst = registry(implementation);
    let image = big_image(72, 40 * MIB);
    push_image(&src.url(), "big/layer", "1", &image).await;
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = std::sync::Arc::clone(&lost);
    let front = Front::start(
        dst.host(),
        FrontOptions {
            lose_answer: Some(std::sync::Arc::new(move |r: &Request| {
                let closing = r.method == "PUT"
                    && r.target.contains("/blobs/uploads/")
                    && r.target.contains("digest=")
                    && r.body.is_empty();
                closing && !once.swap(true, std::sync::atomic::Ordering::SeqCst)
            })),
            ..FrontOptions::default()
        },
    );
    let engine = engine(&[src.host().to_owned(), front.host()]);
    let copied = engine
        .copy(
            &reference(&format!("{}/big/layer:1", src.host())),
            &reference(&format!("{}/big/layer:1", front.host())),
        )
        .await;
    assert!(
        lost.load(std::sync::atomic::Ordering::SeqCst),
        "no closing PUT went through the front: the blob was not chunked"
    );
    copied.expect("the copy ends copied");
    assert_eq!(
        &skopeo::manifest_digest(&format!("{}/big/layer:1", dst.host())),
        image.digest()
    );
    // The blob went up once: the lost answer cost no bytes.
    let sent = image_mirror_testkit::fleet::upload_bytes(&front.requests());
    assert!(sent < 41 * MIB, "{sent} bytes sent for a 40 MiB blob");
}
