//! `image-mirror copy` as users run it: output, exit statuses, credentials from a Docker config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::tls::TestCa;
use image_mirror_testkit::{skopeo, Registry};

fn copy(args: &[&str], docker_config: &Path, insecure: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--insecure-registry")
        .arg(insecure.join(","))
        .arg("copy")
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env("IMAGE_MIRROR_CACHE_DIR", docker_config.join("cache"))
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_then_reports_already_present() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = images::oci_index(101);
    push_image(&src.url(), "app/web", "v2.1.0", &image).await;
    let config = tempfile::tempdir().unwrap();
    let from = format!("{}/app/web:v2.1.0", src.host());
    let to = format!("{}/mirror/app-web", dst.host());
    let hosts = [src.host(), dst.host()];

    let out = copy(&[&from, &to], config.path(), &hosts);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("copied: {from} -> {to}")), "{t}");
    assert!(
        t.contains(&format!("digest      {}", image.digest())),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "blobs       {} copied, 0 mounted, 0 skipped",
            image.blobs.len()
        )),
        "{t}"
    );
    assert!(t.contains("windows/amd64:10.0.17763.5820"), "{t}");

    let out = copy(&[&from, &to], config.path(), &hosts);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("already present"), "{t}");
    assert!(t.contains("bytes sent  0"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_takes_docker_config_credentials_and_refuses_wrong_ones() {
    let src = Registry::start();
    let auth_dir = tempfile::tempdir().unwrap();
    let password = "correct-horse-battery-9f3e";
    let dst = Registry::start_with(&RegistryOptions::with_user(
        auth_dir.path(),
        "mirror",
        password,
    ));
    let image = images::docker_manifest_list(102);
    push_image(&src.url(), "lib/tool", "1.0", &image).await;
    let from = format!("{}/lib/tool:1.0", src.host());
    let to = format!("{}/mirror/tool:1.0", dst.host());
    let hosts = [src.host(), dst.host()];

    let write_config = |dir: &Path, user: &str, pass: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, dst.host()),
        )
        .unwrap();
    };

    // No credentials: a clear 401, saying there are none.
    let none = tempfile::tempdir().unwrap();
    let out = copy(&[&from, &to], none.path(), &hosts);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("failed (auth)") && t.contains(dst.host()), "{t}");
    assert!(t.contains("no credentials: "), "{t}");

    // Wrong password: authentication failed, naming where the credentials came from, and
    // the password is nowhere.
    let wrong = tempfile::tempdir().unwrap();
    let wrong_password = "wrong-password-77aa";
    write_config(wrong.path(), "mirror", wrong_password);
    let out = copy(&[&from, &to], wrong.path(), &hosts);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("failed (auth)"), "{t}");
    assert!(t.contains("authentication failed (HTTP 401)"), "{t}");
    assert!(t.contains("the auths entry for"), "{t}");
    assert!(!t.contains("refuses pushes"), "{t}");
    assert!(!t.contains(wrong_password), "the password leaked: {t}");

    // The right password: copied, and the password is nowhere in the output.
    let right = tempfile::tempdir().unwrap();
    write_config(right.path(), "mirror", password);
    let out = copy(&[&from, &to], right.path(), &hosts);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&image.digest().to_string()), "{t}");
    assert!(!t.contains(password), "the password leaked: {t}");
    assert!(!dst.log().iter().any(|l| l.contains(password)));
}

#[test]
fn an_invalid_reference_is_refused_before_anything_is_written() {
    let dst = Registry::start();
    let config = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("Upper/Case:1".to_owned(), format!("{}/x/y:1", dst.host())),
        (
            "library/ok:1".to_owned(),
            format!("{}/x/y:bad tag", dst.host()),
        ),
        ("library/ok:".to_owned(), format!("{}/x/y:1", dst.host())),
    ] {
        let out = copy(&[&from, &to], config.path(), &[dst.host()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{from} -> {to}: {t}");
        assert!(t.contains("invalid"), "{t}");
    }
    assert!(dst.requests().is_empty(), "{:?}", dst.requests());
}

#[test]
fn a_missing_source_tag_fails_with_exit_1_naming_the_class() {
    let src = Registry::start();
    let dst = Registry::start();
    let config = tempfile::tempdir().unwrap();
    let out = copy(
        &[
            &format!("{}/no/such:1", src.host()),
            &format!("{}/x/y:1", dst.host()),
        ],
        config.path(),
        &[src.host(), dst.host()],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("(not_found)") && t.contains("not found"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_registries_are_verified_against_the_trusted_authorities() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new(certs.path());
    let other_certs = tempfile::tempdir().unwrap();
    let other_ca = TestCa::new(other_certs.path());
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions::with_tls(&ca));
    // Four platforms with a 2 MiB layer each: eight uploads at once, more than one
    // connection's worth of flow-control window.
    let children = images::Platform::four()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let layer = images::Blob::new(
                images::OCI_LAYER,
                images::random_bytes(131 + i as u64, 2 * 1024 * 1024),
            );
            let image = images::single_with_layers(images::Format::Oci, &p, vec![layer]);
            (p, image)
        })
        .collect();
    let image = images::index_of(images::Format::Oci, children);
    push_image(&src.url(), "app/tls", "1", &image).await;
    let config = tempfile::tempdir().unwrap();
    let no_cert_dir = tempfile::tempdir().unwrap();
    let from = format!("{}/app/tls:1", src.host());
    let to = format!("{}/mirror/tls:1", dst.host());
    // Only the source is named insecure: the target is spoken to over TLS, trusting the
    // authorities of SSL_CERT_FILE alone.
    let copy_trusting = |authorities: &Path| {
        Command::new(env!("CARGO_BIN_EXE_image-mirror"))
            .args(["--insecure-registry", src.host(), "copy", &from, &to])
            .env("DOCKER_CONFIG", config.path())
            .env("IMAGE_MIRROR_CACHE_DIR", config.path().join("cache"))
            .env("SSL_CERT_FILE", authorities)
            .env("SSL_CERT_DIR", no_cert_dir.path())
            .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
            .output()
            .unwrap()
    };
    let handshake_failures = || {
        dst.log()
            .iter()
            .filter(|l| l.contains("TLS handshake error"))
            .count()
    };

    // A certificate from an authority not trusted: refused once (not retried), saying why,
    // and nothing reaches the target.
    let out = copy_trusting(&other_ca.ca_cert);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("TLS: invalid peer certificate"), "{t}");
    assert!(t.contains(dst.host()), "{t}");
    assert_eq!(
        dst.wait_for_log_lines("TLS handshake error", 1, std::time::Duration::from_secs(10)),
        1,
        "{t}"
    );
    assert_eq!(handshake_failures(), 1, "{t}");
    assert!(dst.requests().is_empty(), "{:?}", dst.requests());

    // Trusted: copied over TLS; skopeo reads the same digest there.
    let out = copy_trusting(&ca.ca_cert);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("copied: {from} -> {to}")), "{t}");
    assert_eq!(&skopeo::manifest_digest(&to), image.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_token_server_does_not_grant_exits_1_naming_the_repository() {
    use image_mirror_testkit::{Policy, TokenServer};
    let src = Registry::start();
    let tokens = TokenServer::start(Policy {
        no_push: std::collections::HashSet::from(["mirror/locked".to_owned()]),
        ..Policy::user("mirror", "token-pw-31")
    });
    let dst = Registry::start_with(&RegistryOptions::with_token(&tokens));
    let image = images::oci_manifest(131);
    push_image(&src.url(), "app/web", "v1", &image).await;
    let config = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("mirror:token-pw-31");
    std::fs::write(
        config.path().join("config.json"),
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, dst.host()),
    )
    .unwrap();
    let token_host = tokens.host();
    let hosts = [src.host(), dst.host(), token_host.as_str()];
    let out = copy(
        &[
            &format!("{}/app/web:v1", src.host()),
            &format!("{}/mirror/locked:v1", dst.host()),
        ],
        config.path(),
        &hosts,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("mirror/locked"), "{t}");
    assert!(t.contains("refuses pushes"), "{t}");
    assert!(t.contains("failed (target_refused)"), "{t}");
    assert!(!t.contains("token-pw-31"), "{t}");
    // The same credentials push elsewhere in that registry.
    let out = copy(
        &[
            &format!("{}/app/web:v1", src.host()),
            &format!("{}/mirror/open:v1", dst.host()),
        ],
        config.path(),
        &hosts,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
