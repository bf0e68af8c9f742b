//! `image-mirror` against a registry that is out to get it (the testkit's hostile registry):
//! a copy whose upload is sent to another host fails saying why, and neither the credentials
//! nor the password leave with it. The registry client's rules themselves (upload locations,
//! tag-list links, blob redirects, token realms) are tested beside it, in
//! `registry/tests/hostile.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile_support;

use hostile_support::*;
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{HostileRegistry, Hostility, Registry};

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
