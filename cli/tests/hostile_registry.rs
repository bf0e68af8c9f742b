//! `image-mirror` against a registry that is out to get it (the testkit's hostile registry):
//! the binary's memory stays small under huge answers, `--request-timeout` reaches the client,
//! duplicated manifests are read once, and blobs that lie or stall are caught. The client's
//! caps and deadlines themselves are tested in `registry/tests/hostile.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile_support;

use std::process::Output;
use std::time::{Duration, Instant};

use hostile_support::*;
use image_mirror_testkit::hostile::BadBody;
use image_mirror_testkit::images::{self, Blob};
use image_mirror_testkit::{skopeo, HostileRegistry, Hostility, Registry};

fn against(hostility: Hostility, args: &[&str]) -> (Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let hostile = HostileRegistry::start(hostility);
    let image = images::oci_manifest(703);
    // An index whose only child is missing: the child's GET gets the error answer.
    let missing = Blob::new(images::OCI_MANIFEST, b"{}".to_vec());
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":2}}]}}"#,
        images::OCI_INDEX,
        images::OCI_MANIFEST,
        missing.digest
    );
    hostile.push("app", "v1", &image);
    hostile.put_manifest("app", "broken", images::OCI_INDEX, index.as_bytes());
    hostile.set_tags("app", &["v1"]);
    docker_config(dir.path(), &hostile.host());
    let image_name = format!("{}/app", hostile.host());
    std::fs::write(
        dir.path().join("images-list"),
        format!("{image_name} mirror/app v1\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        format!(r#"{{"app": {{"images": ["{image_name}"], "versionSource": "registry"}}}}"#),
    )
    .unwrap();
    let dst = Registry::start();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("HOSTILE", &hostile.host())
                .replace("TARGET", dst.host())
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    image_mirror(&args, dir.path(), &[hostile.host(), dst.host().to_owned()])
}

#[test]
fn endless_and_huge_answers_are_cut_off_at_their_cap() {
    let bad = [
        BadBody::Endless,
        BadBody::Huge(100 * MIB),
        BadBody::HugeUnannounced(100 * MIB),
    ];
    for body in bad {
        let cases = [
            (
                "token answer",
                Hostility {
                    auth: bearer(),
                    token_body: Some(body),
                    ..Hostility::default()
                },
                vec!["copy", "HOSTILE/app:v1", "TARGET/mirror/app:v1"],
                "fetch token: the answer is over the 1 MiB limit for it",
            ),
            (
                "tag page",
                Hostility {
                    tags_body: Some(body),
                    ..Hostility::default()
                },
                vec!["tags", "app"],
                "list tags of app: the answer is over the 16 MiB limit for it",
            ),
            (
                "error answer",
                Hostility {
                    error_body: Some(body),
                    ..Hostility::default()
                },
                vec!["copy", "HOSTILE/app:broken", "TARGET/mirror/app:broken"],
                ": not found",
            ),
        ];
        for (what, hostility, args, expected) in cases {
            let started = Instant::now();
            let (out, rss_kib) = against(hostility, &args);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(1), "{what} {body:?}: {t}");
            assert!(t.contains(expected), "{what} {body:?}: {t}");
            assert!(
                rss_kib > 0 && rss_kib < 64 * 1024,
                "{what} {body:?}: peak RSS {rss_kib} KiB"
            );
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what} {body:?}"
            );
        }
    }
}

#[test]
fn the_request_timeout_is_settable() {
    let hostile = HostileRegistry::start(Hostility {
        hang: true,
        ..Hostility::default()
    });
    let dst = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = copy_app(&hostile, &dst, dir.path(), &["--request-timeout", "1"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("no whole answer within 1s"), "{t}");
    // Three tries of one second and their pauses.
    assert!(started.elapsed() < Duration::from_secs(15), "{t}");
}

/// An index listing `child` `times` times.
fn index_of(child: &Blob, media_type: &str, times: usize) -> Vec<u8> {
    let entry = format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}"#,
        child.digest,
        child.bytes.len()
    );
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
        images::OCI_INDEX,
        vec![entry; times].join(",")
    )
    .into_bytes()
}

#[test]
fn a_child_listed_ten_thousand_times_is_fetched_once() {
    let hostile = HostileRegistry::start(Hostility::default());
    let image = images::oci_manifest(705);
    hostile.push("app", "single", &image);
    let child = image.top().clone();
    let index = index_of(&child, images::OCI_MANIFEST, 10_000);
    hostile.put_manifest("app", "v1", images::OCI_INDEX, &index);
    let dst = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let to = format!("{}/mirror/app:v1", dst.host());
    let (out, _) = image_mirror(
        &["copy", &format!("{}/app:v1", hostile.host()), &to],
        dir.path(),
        &[hostile.host(), dst.host().to_owned()],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(hostile.manifest_gets("app", child.digest.as_str()), 1);
    assert_eq!(
        skopeo::manifest_digest(&to),
        image_mirror_common::Digest::sha256_of(&index)
    );
    assert!(t.contains("manifests   2 pushed"), "{t}");
}

#[test]
fn nested_duplicates_are_copied_once_and_too_many_manifests_are_refused() {
    let hostile = HostileRegistry::start(Hostility::default());
    let image = images::oci_manifest(706);
    hostile.push("app", "single", &image);
    // 1,000 x 1,000: the top lists one nested index 1,000 times, which lists one child 1,000
    // times.
    let nested = Blob::new(
        images::OCI_INDEX,
        index_of(image.top(), images::OCI_MANIFEST, 1000),
    );
    hostile.put_manifest("app", "nested", images::OCI_INDEX, &nested.bytes);
    let top = index_of(&nested, images::OCI_INDEX, 1000);
    hostile.put_manifest("app", "v1", images::OCI_INDEX, &top);
    // 1,001 distinct nested indexes: over the limit of distinct manifests.
    let many: Vec<Blob> = (0..1001)
        .map(|i| {
            let mut bytes = index_of(image.top(), images::OCI_MANIFEST, 1);
            bytes.truncate(bytes.len() - 1);
            bytes.extend_from_slice(format!(r#","annotations":{{"n":"{i}"}}}}"#).as_bytes());
            Blob::new(images::OCI_INDEX, bytes)
        })
        .collect();
    let entries: Vec<String> = many
        .iter()
        .map(|b| {
            hostile.put_manifest("app", b.digest.as_str(), images::OCI_INDEX, &b.bytes);
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                images::OCI_INDEX,
                b.digest,
                b.bytes.len()
            )
        })
        .collect();
    let wide = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
        images::OCI_INDEX,
        entries.join(",")
    );
    hostile.put_manifest("app", "wide", images::OCI_INDEX, wide.as_bytes());

    let dst = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let hosts = [hostile.host(), dst.host().to_owned()];
    let to = format!("{}/mirror/app:v1", dst.host());
    let started = Instant::now();
    let (out, rss_kib) = image_mirror(
        &["copy", &format!("{}/app:v1", hostile.host()), &to],
        dir.path(),
        &hosts,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(rss_kib < 256 * 1024, "peak RSS {rss_kib} KiB");
    assert_eq!(hostile.manifest_gets("app", nested.digest.as_str()), 1);
    assert_eq!(hostile.manifest_gets("app", image.top().digest.as_str()), 1);
    assert_eq!(
        skopeo::manifest_digest(&to),
        image_mirror_common::Digest::sha256_of(&top)
    );

    let (out, _) = image_mirror(
        &[
            "copy",
            &format!("{}/app:wide", hostile.host()),
            &format!("{}/mirror/wide:1", dst.host()),
        ],
        dir.path(),
        &hosts,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("more than 1000 distinct manifests; refusing it"),
        "{t}"
    );
    let writes: Vec<String> = dst
        .requests()
        .into_iter()
        .filter(|r| r.contains("/mirror/wide/") && !r.starts_with("GET") && !r.starts_with("HEAD"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[test]
fn a_blob_longer_than_its_descriptor_is_always_an_error() {
    for unannounced in [false, true] {
        let hostile = HostileRegistry::start(Hostility {
            blobs_unannounced: unannounced,
            ..Hostility::default()
        });
        let image = images::oci_manifest(707);
        hostile.push("app", "v1", &image);
        let layer = image.blobs.last().unwrap();
        let mut longer = layer.bytes.clone();
        longer.extend_from_slice(b"and then some");
        hostile.put_blob(layer.digest.as_str(), &longer);
        let dst = Registry::start();
        let dir = tempfile::tempdir().unwrap();
        let out = copy_app(&hostile, &dst, dir.path(), &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "unannounced {unannounced}: {t}");
        let expected = if unannounced {
            "the blob is longer than its descriptor's"
        } else {
            "the answer announces"
        };
        assert!(t.contains(expected), "unannounced {unannounced}: {t}");
        let manifests: Vec<String> = dst
            .requests()
            .into_iter()
            .filter(|r| r.contains("/manifests/") && r.starts_with("PUT"))
            .collect();
        assert!(manifests.is_empty(), "{manifests:?}");
    }
}

#[test]
fn a_stalled_blob_download_is_resumed_from_where_it_stopped() {
    let hostile = HostileRegistry::start(Hostility {
        trickle_first_blob_get: Some(Duration::from_millis(500)),
        ..Hostility::default()
    });
    let layer = Blob::new(images::OCI_LAYER, images::random_bytes(708, 512 * 1024));
    let image = images::single_with_layers(
        images::Format::Oci,
        &images::Platform::LINUX_AMD64,
        vec![layer],
    );
    hostile.push("app", "v1", &image);
    let dst = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let to = format!("{}/mirror/app:v1", dst.host());
    let started = Instant::now();
    let (out, _) = image_mirror(
        &[
            "--stall-timeout",
            "2",
            "copy",
            &format!("{}/app:v1", hostile.host()),
            &to,
        ],
        dir.path(),
        &[hostile.host(), dst.host().to_owned()],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("resumed"), "{t}");
    assert_eq!(&skopeo::manifest_digest(&to), image.digest());
    // Each blob stalled once (2 s), resumed with Range, and went on.
    let ranged = hostile
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.header("range").is_some())
        .count();
    assert_eq!(ranged, image.blobs.len(), "{t}");
    assert!(started.elapsed() < Duration::from_secs(20), "{t}");
}
