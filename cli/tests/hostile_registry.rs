//! `image-mirror` against a registry that is out to get it (the testkit's hostile registry):
//! credentials never go to another host, every read is capped, every wait has a deadline, and
//! duplicated manifests are read once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use image_mirror_testkit::hostile::{Auth, BadBody};
use image_mirror_testkit::images::{self, Blob};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, HostileRegistry, Hostility, Registry};

const USER: &str = "mirror";
const PASSWORD: &str = "push-rights-7c1d2e";
const MIB: u64 = 1024 * 1024;

fn basic() -> Auth {
    Auth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

fn bearer() -> Auth {
    Auth::Bearer {
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

/// A Docker config (in `dir/docker`) with credentials for `host`.
fn docker_config(dir: &Path, host: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::create_dir_all(dir.join("docker")).unwrap();
    std::fs::write(
        dir.join("docker/config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
}

/// Runs the binary under GNU time: its output, and its peak RSS in KiB.
fn image_mirror(args: &[&str], dir: &Path, insecure: &[String]) -> (Output, u64) {
    let rss_file = dir.join("rss");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--insecure-registry")
        .arg(insecure.join(","))
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let rss = std::fs::read_to_string(&rss_file)
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (out, rss)
}

/// `copy HOSTILE/app:v1 DST/mirror/app:v1` after the global flags `globals`, plain HTTP
/// allowed to both: its output.
fn copy_app(hostile: &HostileRegistry, dst: &Registry, dir: &Path, globals: &[&str]) -> Output {
    let from = format!("{}/app:v1", hostile.host());
    let to = format!("{}/mirror/app:v1", dst.host());
    let mut args = globals.to_vec();
    args.extend(["copy", from.as_str(), to.as_str()]);
    image_mirror(&args, dir, &[hostile.host(), dst.host().to_owned()]).0
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every request that reached the other host carried no `Authorization`.
fn no_credentials_elsewhere(hostile: &HostileRegistry) {
    for r in hostile.requests_elsewhere() {
        assert_eq!(
            r.header("authorization"),
            None,
            "{} {} reached {} with credentials",
            r.method,
            r.target,
            hostile.other_host()
        );
    }
}

/// The registry itself did get credentials: the test is not passing for want of any.
fn credentials_were_used(hostile: &HostileRegistry) {
    assert!(
        hostile
            .requests()
            .iter()
            .any(|r| r.header("host") == Some(hostile.host().as_str())
                && r.header("authorization").is_some()),
        "no request to the registry itself carried credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_location_on_another_host_gets_no_credentials() {
    let src = Registry::start();
    let image = images::oci_manifest(701);
    push_image(&src.url(), "app/web", "v1", &image).await;
    for auth in [basic(), bearer()] {
        let dir = tempfile::tempdir().unwrap();
        let hostile = HostileRegistry::start(Hostility {
            auth: auth.clone(),
            upload_elsewhere: true,
            ..Hostility::default()
        });
        docker_config(dir.path(), &hostile.host());
        let from = format!("{}/app/web:v1", src.host());
        let to = format!("{}/mirror/web:v1", hostile.host());

        // The other host listed as insecure: asked, but without credentials, which it wants.
        let hosts = [src.host().to_owned(), hostile.host(), hostile.other_host()];
        let (out, _) = image_mirror(&["copy", &from, &to], dir.path(), &hosts);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{auth:?}: {t}");
        assert!(t.contains("which go only to the registry itself"), "{t}");
        assert!(!hostile.requests_elsewhere().is_empty(), "{t}");
        no_credentials_elsewhere(&hostile);
        credentials_were_used(&hostile);
        assert!(!t.contains(PASSWORD), "{t}");

        // Not listed: plain HTTP to it is refused, and nothing goes there.
        let fresh = HostileRegistry::start(Hostility {
            auth,
            upload_elsewhere: true,
            ..Hostility::default()
        });
        docker_config(dir.path(), &fresh.host());
        let to = format!("{}/mirror/web:v1", fresh.host());
        let hosts = [src.host().to_owned(), fresh.host()];
        let (out, _) = image_mirror(&["copy", &from, &to], dir.path(), &hosts);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(
            t.contains(&format!("refusing plain HTTP to {}", fresh.other_host())),
            "{t}"
        );
        assert!(fresh.requests_elsewhere().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_link_to_another_host_fails_naming_it() {
    for auth in [basic(), bearer()] {
        let dir = tempfile::tempdir().unwrap();
        let hostile = HostileRegistry::start(Hostility {
            auth: auth.clone(),
            tags_link_elsewhere: true,
            ..Hostility::default()
        });
        hostile.set_tags("app", &["v1.0.0", "v1.1.0"]);
        docker_config(dir.path(), &hostile.host());
        let image = format!("{}/app", hostile.host());
        std::fs::write(
            dir.path().join("images-list"),
            format!("{image} mirror/app v1.0.0\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"app": {{"images": ["{image}"], "versionSource": "registry"}}}}"#),
        )
        .unwrap();
        // Even with localhost listed as insecure, the foreign page is not followed.
        let hosts = [hostile.host(), hostile.other_host()];
        let (out, _) = image_mirror(&["tags", "app"], dir.path(), &hosts);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{auth:?}: {t}");
        assert!(
            t.contains(&format!(
                "Link points to another origin (http://{})",
                hostile.other_host()
            )),
            "{t}"
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report[0]["found"], serde_json::json!([]), "{t}");
        assert!(hostile.requests_elsewhere().is_empty());
        credentials_were_used(&hostile);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_redirect_to_another_host_is_followed_without_credentials() {
    let dst = Registry::start();
    let image = images::oci_index(702);
    for (i, auth) in [basic(), bearer()].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let hostile = HostileRegistry::start(Hostility {
            auth,
            blob_redirect_elsewhere: true,
            ..Hostility::default()
        });
        hostile.push("app/web", "v1", &image);
        docker_config(dir.path(), &hostile.host());
        let to = format!("{}/mirror/web{i}:v1", dst.host());
        let hosts = [hostile.host(), hostile.other_host(), dst.host().to_owned()];
        let (out, _) = image_mirror(
            &["copy", &format!("{}/app/web:v1", hostile.host()), &to],
            dir.path(),
            &hosts,
        );
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        assert_eq!(&skopeo::manifest_digest(&to), image.digest());
        let storage = hostile.requests_elsewhere();
        assert_eq!(storage.len(), image.blobs.len(), "{storage:?}");
        no_credentials_elsewhere(&hostile);
        credentials_were_used(&hostile);
    }
}

/// Runs `args` against a hostile registry with `hostility`; returns the output, peak RSS.
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
fn a_trickling_manifest_and_a_silent_server_time_out_with_the_default_settings() {
    let image = images::oci_manifest(704);
    let trickle = std::thread::spawn(move || {
        let hostile = HostileRegistry::start(Hostility {
            trickle_manifests: Some(Duration::from_secs(20)),
            ..Hostility::default()
        });
        hostile.push("app", "v1", &image);
        let dst = Registry::start();
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = copy_app(&hostile, &dst, dir.path(), &[]);
        (out, started.elapsed())
    });
    let silent = std::thread::spawn(|| {
        let hostile = HostileRegistry::start(Hostility {
            hang: true,
            ..Hostility::default()
        });
        let dst = Registry::start();
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = copy_app(&hostile, &dst, dir.path(), &[]);
        (out, started.elapsed())
    });
    for (what, run) in [("trickle", trickle), ("silent", silent)] {
        let (out, took) = run.join().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {t}");
        assert!(
            t.contains("no whole answer within 30s (the request timeout)"),
            "{what}: {t}"
        );
        assert!(took < Duration::from_secs(240), "{what}: took {took:?}");
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

#[test]
fn a_token_realm_with_an_untrusted_certificate_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = image_mirror_testkit::tls::TestCa::new(dir.path());
    let realm_host = Registry::start_with(
        &image_mirror_testkit::registry::RegistryOptions::with_tls(&ca),
    );
    let hostile = HostileRegistry::start(Hostility {
        auth: bearer(),
        realm: Some(format!("{}/token", realm_host.url())),
        ..Hostility::default()
    });
    hostile.push("app", "v1", &images::oci_manifest(709));
    docker_config(dir.path(), &hostile.host());
    let dst = Registry::start();
    let started = Instant::now();
    // The realm's CA is not trusted: the handshake fails, which no retry can change.
    let out = copy_app(&hostile, &dst, dir.path(), &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("TLS: invalid peer certificate"), "{t}");
    assert!(t.contains("failed (tls)"), "{t}");
    let handshakes = realm_host
        .log()
        .iter()
        .filter(|l| l.contains("TLS handshake error"))
        .count();
    assert_eq!(handshakes, 1, "{t}");
    assert!(started.elapsed() < Duration::from_secs(10), "{t}");
}

#[test]
fn credentials_go_to_a_plain_http_realm_only_on_a_host_listed_as_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let port_holder = HostileRegistry::start(Hostility::default());
    // The realm is the other host's name for the hostile registry itself.
    let hostile = HostileRegistry::start(Hostility {
        auth: bearer(),
        realm: Some(format!("http://{}/token", port_holder.other_host())),
        ..Hostility::default()
    });
    hostile.push("app", "v1", &images::oci_manifest(710));
    docker_config(dir.path(), &hostile.host());
    let dst = Registry::start();
    let out = copy_app(&hostile, &dst, dir.path(), &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "refusing plain HTTP to {}",
            port_holder.other_host()
        )),
        "{t}"
    );
    assert!(port_holder.requests().is_empty(), "the realm was asked");
}
