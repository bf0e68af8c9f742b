//! `image-mirror` against a registry that is out to get it (the testkit's hostile registry):
//! credentials never go to another host, nor to a realm it may not reach.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile_support;

use std::time::{Duration, Instant};

use hostile_support::*;
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, HostileRegistry, Hostility, Registry};

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
