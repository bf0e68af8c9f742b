//! The copy engine against real registries, checked with skopeo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use image_mirror_common::metrics;
use image_mirror_registry::{ClientOptions, RegistryClient, RegistryError};
use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{crane, skopeo, FaultProxy, Faults, Implementation, Registry};
use image_mirror_worker::copy::MountIndex;
use image_mirror_worker::{CopyEngine, CopyError, CopyOptions, CopyOutcome};

mod support;

use support::{big_image, engine, fast_retries, reference, registry, MIB};

on_both_registries!(every_manifest_kind_copies_byte_for_byte);
async fn every_manifest_kind_copies_byte_for_byte(implementation: Implementation) {
    let src = registry(implementation);
    let dst = registry(implementation);
    let engine = engine(&[src.host().to_owned(), dst.host().to_owned()]);
    let kinds: [(&str, Image); 5] = [
        ("oci-manifest", images::oci_manifest(11)),
        ("docker-manifest", images::docker_manifest(12)),
        ("oci-index", images::oci_index(13)),
        ("docker-list", images::docker_manifest_list(14)),
        ("attested", images::oci_index_with_attestations(15)),
    ];
    for (name, image) in kinds {
        push_image(&src.url(), &format!("up/{name}"), "v1.0", &image).await;
        let from = reference(&format!("{}/up/{name}:v1.0", src.host()));
        let to = reference(&format!("{}/mirror/{name}:v1.0", dst.host()));

        let report = engine.copy(&from, &to).await.unwrap();
        assert_eq!(report.outcome, CopyOutcome::Copied, "{name}");
        assert_eq!(&report.digest, image.digest(), "{name}");
        assert_eq!(report.blobs_copied as usize, image.blobs.len(), "{name}");
        assert_eq!(report.bytes_sent as usize, image.blob_bytes(), "{name}");
        assert_eq!(
            report.manifests_pushed as usize,
            image.manifests.len(),
            "{name}"
        );

        // skopeo, an independent client, sees the same digest at both ends, and every child.
        let at_src = skopeo::manifest_digest(&format!("{}/up/{name}:v1.0", src.host()));
        let at_dst = skopeo::manifest_digest(&format!("{}/mirror/{name}:v1.0", dst.host()));
        assert_eq!(at_src, at_dst, "{name}");
        assert_eq!(&at_dst, image.digest(), "{name}");
        assert_eq!(
            skopeo::raw_manifest(&format!("{}/mirror/{name}:v1.0", dst.host())),
            image.top().bytes,
            "{name}"
        );
        for child in &image.manifests {
            let r = format!("{}/mirror/{name}@{}", dst.host(), child.digest);
            assert_eq!(skopeo::manifest_digest(&r), child.digest, "{name} child");
        }
        // And crane, a client sharing no code with skopeo.
        let at_dst = format!("{}/mirror/{name}:v1.0", dst.host());
        assert_eq!(&crane::digest(&at_dst), image.digest(), "{name}: crane");
        assert_eq!(crane::manifest(&at_dst), image.top().bytes, "{name}: crane");

        // Again: already present, and not one blob write reaches the registry.
        let writes = dst.blob_writes();
        let again = engine.copy(&from, &to).await.unwrap();
        assert_eq!(again.outcome, CopyOutcome::AlreadyPresent, "{name}");
        assert_eq!(again.bytes_sent, 0);
        assert_eq!(
            dst.blob_writes(),
            writes,
            "{name}: the second copy wrote blobs"
        );
    }
}

#[tokio::test]
async fn windows_os_version_and_platforms_survive() {
    let src = Registry::start();
    let dst = Registry::start();
    let engine = engine(&[src.host().to_owned(), dst.host().to_owned()]);
    let image = images::oci_index(21);
    push_image(&src.url(), "win/app", "ltsc2019", &image).await;
    let report = engine
        .copy(
            &reference(&format!("{}/win/app:ltsc2019", src.host())),
            &reference(&format!("{}/win/app:ltsc2019", dst.host())),
        )
        .await
        .unwrap();
    assert_eq!(
        report.platforms,
        [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "windows/amd64:10.0.17763.5820"
        ]
    );
    let raw = skopeo::raw_manifest(&format!("{}/win/app:ltsc2019", dst.host()));
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["manifests"][3]["platform"]["os.version"],
        "10.0.17763.5820"
    );
}

on_both_registries!(copy_by_digest_and_shared_layers_mount_across_repositories);
async fn copy_by_digest_and_shared_layers_mount_across_repositories(
    implementation: Implementation,
) {
    let src = registry(implementation);
    let dst = registry(implementation);
    let engine = engine(&[src.host().to_owned(), dst.host().to_owned()]);
    let image = images::oci_index(31);
    push_image(&src.url(), "base/img", "1", &image).await;
    let by_digest = reference(&format!("{}/base/img@{}", src.host(), image.digest()));
    let first = engine
        .copy(
            &by_digest,
            &reference(&format!("{}/team-a/img:1", dst.host())),
        )
        .await
        .unwrap();
    assert_eq!(first.blobs_copied as usize, image.blobs.len());
    // The same blobs into another repository of the same registry: mounted, not sent.
    let second = engine
        .copy(
            &by_digest,
            &reference(&format!("{}/team-b/img:1", dst.host())),
        )
        .await
        .unwrap();
    assert_eq!(second.blobs_mounted as usize, image.blobs.len());
    assert_eq!(second.bytes_sent, 0);
    assert_eq!(
        &skopeo::manifest_digest(&format!("{}/team-b/img:1", dst.host())),
        image.digest()
    );
}

#[tokio::test]
async fn blobs_are_asked_about_only_in_repositories_that_may_hold_them() {
    let src = Registry::start();
    let dst = Registry::start();
    let hosts = [src.host().to_owned(), dst.host().to_owned()];
    let base = Blob::new(OCI_LAYER, images::random_bytes(61, 4096));
    let with_app = |seed| {
        let app = Blob::new(OCI_LAYER, images::random_bytes(seed, 4096));
        images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![base.clone(), app])
    };
    let (one, two) = (with_app(62), with_app(63));
    push_image(&src.url(), "up/app", "1", &one).await;
    push_image(&src.url(), "up/app", "2", &two).await;
    let blob_heads = |repo: &str| {
        dst.requests()
            .iter()
            .filter(|r| r.starts_with("HEAD") && r.contains(&format!("/v2/{repo}/blobs/")))
            .count()
    };
    let copy = |engine: CopyEngine, tag: &str, to: &str| {
        let from = reference(&format!("{}/up/app:{tag}", src.host()));
        let to = reference(&format!("{}/{to}:{tag}", dst.host()));
        async move { engine.copy(&from, &to).await.unwrap() }
    };

    // A repository that does not exist yet holds nothing: no blob is asked about.
    let first = copy(engine(&hosts), "1", "mirror/app").await;
    assert_eq!(first.blobs_copied as usize, one.blobs.len());
    assert_eq!(blob_heads("mirror/app"), 0);

    // Once it exists, every blob is asked about (this engine knows no locations), and the
    // shared base layer is found there.
    let second = copy(engine(&hosts), "2", "mirror/app").await;
    assert_eq!(blob_heads("mirror/app"), two.blobs.len());
    assert_eq!(second.blobs_skipped, 1);
    assert_eq!(second.blobs_copied as usize, two.blobs.len() - 1);

    // A repository where a broken copy left the base layer and no tag: the location index
    // of the machine that ran it knows, so that blob is asked about and skipped; the others
    // go without asking.
    let cache = tempfile::tempdir().unwrap();
    let path = cache.path().join("blob-locations");
    let http = reqwest::Client::new();
    image_mirror_testkit::push::push_blob(
        &http,
        &dst.url(),
        "left/app",
        &base.digest,
        base.bytes.clone(),
    )
    .await;
    let left: image_mirror_common::Repository = format!("{}/left/app", dst.host()).parse().unwrap();
    MountIndex::persistent(&path).record(&left, &base.digest);
    let client = engine(&hosts).client().clone();
    let resumed = CopyEngine::with_mounts(
        client,
        CopyOptions::default(),
        MountIndex::persistent(&path),
    );
    let third = copy(resumed, "1", "left/app").await;
    assert_eq!(blob_heads("left/app"), 1);
    assert_eq!(third.blobs_skipped, 1);
    assert_eq!(third.blobs_copied as usize, one.blobs.len() - 1);

    for (repo, tag, image) in [("mirror/app", "2", &two), ("left/app", "1", &one)] {
        assert_eq!(
            &skopeo::manifest_digest(&format!("{}/{repo}:{tag}", dst.host())),
            image.digest()
        );
    }
}

#[tokio::test]
async fn a_corrupt_source_blob_fails_with_digest_mismatch_and_writes_no_manifest() {
    let src = Registry::start();
    let dst = Registry::start();
    let engine = engine(&[src.host().to_owned(), dst.host().to_owned()]);
    // Three platforms of small layers, whose blobs are all in the target long before the
    // last platform's large layer has been read: child manifests go up as soon as their own
    // blobs are in, but only once every blob of the image has matched its digest.
    let platforms = Platform::four();
    let big = Blob::new(OCI_LAYER, images::random_bytes(4100, 24 << 20));
    let children = platforms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let layer = if i == platforms.len() - 1 {
                big.clone()
            } else {
                Blob::new(OCI_LAYER, images::random_bytes(4000 + i as u64, 1024))
            };
            (
                p.clone(),
                images::single_with_layers(Format::Oci, p, vec![layer]),
            )
        })
        .collect();
    let image = images::index_of(Format::Oci, children);
    push_image(&src.url(), "bad/img", "1", &image).await;
    // Flip the last byte of the stored large layer, keeping its length: the mismatch shows
    // only once the whole blob has been read.
    let path = src.blob_data_path(big.digest.as_str());
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let err = engine
        .copy(
            &reference(&format!("{}/bad/img:1", src.host())),
            &reference(&format!("{}/bad/img:1", dst.host())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CopyError::Registry(RegistryError::DigestMismatch { .. })
        ),
        "{err}"
    );
    assert_eq!(err.class(), "digest_mismatch");
    assert!(!err.is_transient());
    let requests = dst.requests();
    let blob_puts = requests
        .iter()
        .filter(|r| r.starts_with("PUT") && r.contains("/blobs/uploads/"))
        .count();
    assert!(
        blob_puts >= 6,
        "the small platforms' blobs reached the target first: {requests:?}"
    );
    let manifest_writes = requests
        .iter()
        .filter(|r| r.starts_with("PUT") && r.contains("/manifests/"))
        .count();
    assert_eq!(manifest_writes, 0, "a manifest reached the target");
}

#[tokio::test]
async fn a_missing_source_blob_fails_and_cancels_its_upload() {
    let src = Registry::start();
    let dst = Registry::start();
    let engine = engine(&[src.host().to_owned(), dst.host().to_owned()]);
    let image = images::oci_manifest(61);
    push_image(&src.url(), "gone/img", "1", &image).await;
    // The source still lists the layer but no longer has its bytes.
    let layer = image
        .blobs
        .iter()
        .find(|b| b.media_type == OCI_LAYER)
        .unwrap();
    std::fs::remove_file(src.blob_data_path(layer.digest.as_str())).unwrap();

    let err = engine
        .copy(
            &reference(&format!("{}/gone/img:1", src.host())),
            &reference(&format!("{}/gone/img:1", dst.host())),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), "not_found", "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains(layer.digest.as_str()), "{err}");
    // The upload opened for the layer (while its download was asked for) was cancelled, and
    // no manifest was written.
    assert!(
        dst.wait_for_request(
            |r| r.starts_with("DELETE") && r.contains("/blobs/uploads/"),
            Duration::from_secs(10)
        ),
        "no upload was cancelled: {:?}",
        dst.requests()
    );
    let requests = dst.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("PUT") && r.contains("/manifests/")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = images::oci_manifest(51);
    push_image(&src.url(), "busy/img", "1", &image).await;
    let proxy = FaultProxy::start(src.host(), Faults::too_many_requests(1, 2));
    let engine = engine(&[proxy.host(), dst.host().to_owned()]);
    let started = Instant::now();
    let report = engine
        .copy(
            &reference(&format!("{}/busy/img:1", proxy.host())),
            &reference(&format!("{}/busy/img:1", dst.host())),
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retried after {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.canned_served(), 1);
    assert_eq!(&report.digest, image.digest());
    assert_eq!(
        engine
            .client()
            .stats()
            .too_many_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The process's metrics count it too (labels are this test's own proxy).
    let host = proxy.host();
    assert_eq!(metrics::TOO_MANY_REQUESTS.get(&[host.as_str()]), 1.0);
    assert!(metrics::RETRIES.get(&["http_429"]) >= 1.0);
}

#[tokio::test]
async fn a_registry_answering_503_for_a_while_ends_copied() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = images::oci_index(52);
    push_image(&src.url(), "flaky/img", "1", &image).await;
    let proxy = FaultProxy::start(dst.host(), Faults::unavailable(3));
    let engine = engine(&[src.host().to_owned(), proxy.host()]);
    let report = engine
        .copy(
            &reference(&format!("{}/flaky/img:1", src.host())),
            &reference(&format!("{}/flaky/img:1", proxy.host())),
        )
        .await
        .unwrap();
    assert_eq!(proxy.canned_served(), 3);
    assert_eq!(
        skopeo::manifest_digest(&format!("{}/flaky/img:1", dst.host())),
        report.digest
    );
}

#[tokio::test]
async fn oversized_manifest_is_refused_before_anything_is_written() {
    // Registries refuse to store manifests over 4 MiB, so a proxy serves one: once with a
    // Content-Length, once without (read until the connection closes).
    let src = Registry::start();
    let dst = Registry::start();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&images::oci_manifest(61).top().bytes).unwrap();
    manifest["annotations"] = serde_json::json!({"padding": "x".repeat(5 * 1024 * 1024)});
    let body = serde_json::to_vec(&manifest).unwrap();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\n",
        images::OCI_MANIFEST
    );
    let with_length = [
        format!("{head}Content-Length: {}\r\n\r\n", body.len()).into_bytes(),
        body.clone(),
    ]
    .concat();
    let until_close = [
        format!("{head}Connection: close\r\n\r\n").into_bytes(),
        body,
    ]
    .concat();
    // The HEAD that comes first answers without a digest, so the manifest is read.
    let head_reply = format!("{head}Content-Length: 0\r\nConnection: close\r\n\r\n").into_bytes();
    for canned in [with_length, until_close] {
        let proxy = FaultProxy::start(
            src.host(),
            Faults {
                canned: vec![head_reply.clone(), canned],
                ..Faults::default()
            },
        );
        let engine = engine(&[proxy.host(), dst.host().to_owned()]);
        let err = engine
            .copy(
                &reference(&format!("{}/big/img:1", proxy.host())),
                &reference(&format!("{}/big/img:1", dst.host())),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("over the 4 MiB limit"), "{err}");
        assert!(!err.is_transient());
        assert_eq!(proxy.canned_served(), 2);
    }
    let writes: Vec<String> = dst
        .requests()
        .into_iter()
        .filter(|r| !r.starts_with("GET") && !r.starts_with("HEAD"))
        .collect();
    assert!(writes.is_empty(), "the target saw writes: {writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_host_are_limited() {
    let src = Registry::start();
    let image = images::oci_index(81);
    push_image(&src.url(), "lim/img", "1", &image).await;
    let repo: image_mirror_common::Repository = format!("{}/lim/img", src.host()).parse().unwrap();
    let mut peaks = Vec::new();
    for limit in [2, 16] {
        let proxy = FaultProxy::start(src.host(), Faults::default());
        let client = RegistryClient::new(ClientOptions {
            insecure_hosts: vec![proxy.host()],
            max_requests_per_host: limit,
            ..ClientOptions::default()
        })
        .unwrap();
        let repo = repo.with_registry(&proxy.host()).unwrap();
        let lookups = (0..24).map(|_| {
            let (client, repo) = (client.clone(), repo.clone());
            async move { client.get_manifest(&repo, "1").await.unwrap() }
        });
        futures_util::future::join_all(lookups).await;
        // Requests, not connections: a connection whose answer was just read may still be
        // open, unused, while the next request goes out on a new one.
        peaks.push(proxy.peak_requests());
    }
    assert!(peaks[0] <= 2, "limit 2, yet {} requests at once", peaks[0]);
    assert!(
        peaks[1] > 2,
        "without a tight limit the test should see more: {peaks:?}"
    );
    drop(repo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_within_one_registry_completes_under_a_limit_of_one() {
    // Source and target on one host, one request at a time: a blob copy's download and upload
    // come from separate pools, so the copy cannot wait on itself.
    let reg = Registry::start();
    let small = images::oci_index(82);
    let big = big_image(83, 40 * MIB);
    push_image(&reg.url(), "from/small", "1", &small).await;
    push_image(&reg.url(), "from/big", "1", &big).await;
    let client = RegistryClient::new(ClientOptions {
        insecure_hosts: vec![reg.host().to_owned()],
        max_requests_per_host: 1,
        retry: fast_retries(),
        ..ClientOptions::default()
    })
    .unwrap();
    let engine = CopyEngine::new(client, CopyOptions::default());
    for (name, image) in [("small", &small), ("big", &big)] {
        let from = reference(&format!("{}/from/{name}:1", reg.host()));
        let to = reference(&format!("{}/to/{name}:1", reg.host()));
        let copy = engine.copy(&from, &to);
        let report = tokio::time::timeout(Duration::from_secs(120), copy)
            .await
            .expect("the copy stalled")
            .unwrap();
        assert_eq!(&report.digest, image.digest());
    }
}

#[tokio::test]
async fn a_schema1_manifest_is_refused_with_a_clear_message() {
    let src = Registry::start();
    let dst = Registry::start();
    let body = br#"{"schemaVersion":1,"name":"old/img","tag":"1","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let canned = [
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.distribution.manifest.v1+prettyjws\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes(),
        body.to_vec(),
    ]
    .concat();
    // The HEAD that comes first answers without a digest, so the manifest is read.
    let head_reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
    let proxy = FaultProxy::start(
        src.host(),
        Faults {
            canned: vec![head_reply, canned],
            ..Faults::default()
        },
    );
    let engine = engine(&[proxy.host(), dst.host().to_owned()]);
    let err = engine
        .copy(
            &reference(&format!("{}/old/img:1", proxy.host())),
            &reference(&format!("{}/old/img:1", dst.host())),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("schema1 manifests are not supported"),
        "{err}"
    );
    assert!(!err.is_transient());
}
