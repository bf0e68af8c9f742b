//! Signatures, attestations and SBOMs travel with the image: made by the real cosign (a key
//! of the test's own, no transparency log), in both of its formats (OCI 1.1 referrers, kept
//! in the fallback tag by a registry without the referrers API, and the legacy `.sig`/`.att`
//! tags), copied with `--referrers --digest-tags`, and verified by cosign against the target,
//! offline. Without the flags, no referrers request is made.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use image_mirror_common::Digest;
use image_mirror_registry::referrers::fallback_tag;
use image_mirror_testkit::images::{self, Blob};
use image_mirror_testkit::process::SpawnRunning;
use image_mirror_testkit::push::{push_image, push_manifest};
use image_mirror_testkit::{crane, tools, Front, FrontOptions, Registry};
use serde_json::{json, Value};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SBOM_TYPE: &str = "application/spdx+json";

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// cosign in `dir`, offline: no transparency log, plain HTTP to the test's registries.
fn cosign(dir: &Path, args: &[&str]) -> Output {
    image_mirror_testkit::cosign::run(dir, "", args)
}

fn cosign_ok(dir: &Path, args: &[&str]) -> String {
    image_mirror_testkit::cosign::ok(dir, args)
}

use image_mirror_testkit::cosign::HTTP;

/// `cosign <command> --key cosign.key … <image>`: OCI 1.1 referrers (cosign 3's default,
/// with a signing config without services), or the legacy tags of cosign 2.
fn cosign_with_key(dir: &Path, command: &[&str], image: &str, legacy: bool) {
    let mut args = command.to_vec();
    args.extend(["--key", "cosign.key", "-y"]);
    args.extend(image_mirror_testkit::cosign::writing_flags(legacy));
    args.push(image);
    cosign_ok(dir, &args);
}

fn sign(dir: &Path, image: &str, legacy: bool) {
    cosign_with_key(dir, &["sign"], image, legacy);
}

fn attest_sbom(dir: &Path, image: &str, legacy: bool) {
    let attest = ["attest", "--type", "spdxjson", "--predicate", "sbom.json"];
    cosign_with_key(dir, &attest, image, legacy);
}

fn verify(dir: &Path, image: &str) -> Output {
    let mut args = vec![
        "verify",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog=true",
    ];
    args.extend(HTTP);
    args.push(image);
    cosign(dir, &args)
}

fn verify_attestation(dir: &Path, image: &str) -> Output {
    let mut args = vec![
        "verify-attestation",
        "--key",
        "cosign.pub",
        "--type",
        "spdxjson",
    ];
    args.push("--insecure-ignore-tlog=true");
    args.extend(HTTP);
    args.push(image);
    cosign(dir, &args)
}

/// A key pair, a signing config without services, and an SBOM, in a fresh folder.
fn keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cosign_ok(dir.path(), &["generate-key-pair"]);
    cosign_ok(
        dir.path(),
        &["signing-config", "create", "--out", "signing-config.json"],
    );
    let sbom = json!({"spdxVersion": "SPDX-2.3", "name": "app", "packages": []});
    std::fs::write(dir.path().join("sbom.json"), sbom.to_string()).unwrap();
    dir
}

fn copy(hosts: &[&str], cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--insecure-registry")
        .arg(hosts.join(","))
        .arg("copy")
        .args(args)
        .env("DOCKER_CONFIG", cache)
        .env("IMAGE_MIRROR_CACHE_DIR", cache.join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signatures_and_sbom_attestations_of_both_formats_verify_at_the_target() {
    let (src, dst) = (Registry::start(), Registry::start());
    let dir = keys();
    let d = dir.path();
    // cosign 3's referrers (the fallback tag here), and its legacy tags.
    for (tag, seed, legacy) in [("v1", 7100, false), ("v2", 7101, true)] {
        let image = images::oci_manifest(seed);
        push_image(&src.url(), "team/app", tag, &image).await;
        let at_source = format!("{}/team/app@{}", src.host(), image.digest());
        sign(d, &at_source, legacy);
        attest_sbom(d, &at_source, legacy);
    }
    let tags = crane::ls(&format!("{}/team/app", src.host()));
    assert!(tags.iter().any(|t| t.ends_with(".sig")), "{tags:?}");
    assert!(tags.iter().any(|t| t.ends_with(".att")), "{tags:?}");
    assert!(
        tags.iter()
            .any(|t| t.starts_with("sha256-") && !t.contains('.')),
        "{tags:?}"
    );

    for tag in ["v1", "v2"] {
        let digest = crane::digest(&format!("{}/team/app:{tag}", src.host()));
        let src_ref = format!("{}/team/app:{tag}", src.host());
        // Without the flags: the image alone, which cosign cannot verify.
        let bare = format!("{}/bare/app:{tag}", dst.host());
        let out = copy(&[src.host(), dst.host()], d, &[&src_ref, &bare]);
        assert!(out.status.success(), "{}", text(&out));
        let out = verify(d, &format!("{}/bare/app@{digest}", dst.host()));
        assert!(
            !out.status.success(),
            "verified without signatures: {}",
            text(&out)
        );

        let dst_ref = format!("{}/mirror/app:{tag}", dst.host());
        let flags = ["--referrers", "--digest-tags"];
        let out = copy(
            &[src.host(), dst.host()],
            d,
            &[&flags[..], &[&src_ref, &dst_ref]].concat(),
        );
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("attached"), "{said}");
        let at_target = format!("{}/mirror/app@{digest}", dst.host());
        let out = verify(d, &at_target);
        assert!(
            out.status.success(),
            "cosign verify at the target ({tag}): {}",
            text(&out)
        );
        let out = verify_attestation(d, &at_target);
        assert!(
            out.status.success(),
            "cosign verify-attestation at the target ({tag}): {}",
            text(&out)
        );
    }
}

/// The fallback tag's index of `subject` in `repo`.
fn fallback_entries(host: &str, repo: &str, subject: &Digest) -> Vec<Value> {
    let raw = crane::manifest(&format!("{host}/{repo}:{}", fallback_tag(subject)));
    let index: Value = serde_json::from_slice(&raw).unwrap();
    index["manifests"].as_array().cloned().unwrap_or_default()
}

/// An index at `repo:v1` with an SBOM artifact whose subject it is, listed in the source's
/// fallback tag (distribution has no referrers API).
async fn push_with_sbom(src: &Registry, repo: &str, seed: u64) -> (images::Image, images::Image) {
    let image = images::oci_index(seed);
    push_image(&src.url(), repo, "v1", &image).await;
    let sbom = images::artifact(seed + 1, SBOM_TYPE, Some(image.top()));
    push_image(&src.url(), repo, &sbom.digest().to_string(), &sbom).await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sbom.digest(),
            "size": sbom.top().bytes.len(),
            "artifactType": SBOM_TYPE,
        }],
    });
    let http = reqwest::Client::new();
    let tag = fallback_tag(image.digest());
    let blob = Blob::new(INDEX, index.to_string().into_bytes());
    push_manifest(&http, &src.url(), repo, &tag, &blob).await;
    (image, sbom)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_in_a_fallback_tag_is_listed_once_after_two_copies_at_once() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (image, sbom) = push_with_sbom(&src, "team/app", 7200).await;
    let tag = fallback_tag(image.digest());

    let cache = tempfile::tempdir().unwrap();
    let src_ref = format!("{}/team/app:v1", src.host());
    let dst_ref = format!("{}/mirror/app:v1", dst.host());
    let bin = env!("CARGO_BIN_EXE_image-mirror");
    let spawn = |n: usize| {
        Command::new(bin)
            .arg("--insecure-registry")
            .arg(format!("{},{}", src.host(), dst.host()))
            .args(["copy", "--referrers", &src_ref, &dst_ref])
            .env("DOCKER_CONFIG", cache.path())
            .env(
                "IMAGE_MIRROR_CACHE_DIR",
                cache.path().join(format!("cache{n}")),
            )
            .env_remove("AMQP_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .running()
    };
    let (a, b) = (spawn(1), spawn(2));
    for child in [a, b] {
        let out = child.into_inner().wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let listed = fallback_entries(dst.host(), "mirror/app", image.digest());
    let digests: Vec<&str> = listed.iter().filter_map(|e| e["digest"].as_str()).collect();
    assert_eq!(digests, vec![sbom.digest().as_str()], "{listed:?}");
    assert_eq!(listed[0]["artifactType"], SBOM_TYPE);
    // The artifact itself, byte for byte.
    let at_target = crane::manifest(&format!("{}/mirror/app@{}", dst.host(), sbom.digest()));
    assert_eq!(at_target, sbom.top().bytes);

    // Only the SBOM type asked for, on a third target: the same; another type: none.
    let other = format!("{}/other/app:v1", dst.host());
    let out = copy(
        &[src.host(), dst.host()],
        cache.path(),
        &[
            "--referrers",
            "--referrers-type",
            "application/x-other",
            &src_ref,
            &other,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = Command::new(tools::path("crane"))
        .args(["manifest", "--insecure"])
        .arg(format!("{}/other/app:{tag}", dst.host()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a filtered-out referrer was listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flags_no_referrers_request_is_made() {
    let (src, dst) = (Registry::start(), Registry::start());
    let front = Front::start(src.host(), FrontOptions::default());
    let image = images::oci_manifest(7300);
    push_image(&src.url(), "team/app", "v1", &image).await;
    let cache = tempfile::tempdir().unwrap();
    let asks = |front: &Front| {
        front
            .requests()
            .iter()
            .filter(|r| r.target.contains("/referrers/") || r.target.contains("sha256-"))
            .count()
    };
    let src_ref = format!("{}/team/app:v1", front.host());
    let hosts = [front.host(), dst.host().to_owned()];
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let out = copy(
        &hosts,
        cache.path(),
        &[&src_ref, &format!("{}/a/app:v1", dst.host())],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(asks(&front), 0, "{:?}", front.requests());
    // The same copy with the flag asks: the count above could have been other than 0.
    let out = copy(
        &hosts,
        cache.path(),
        &["--referrers", &src_ref, &format!("{}/b/app:v1", dst.host())],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(asks(&front) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_signature_mirrors_what_a_trusted_key_signed_and_nothing_of_the_rest() {
    let src = Registry::start();
    let dst = Registry::start();
    let front = Front::start(dst.host(), FrontOptions::default());
    let (trusted, stranger) = (keys(), keys());
    // a: signed (cosign 3, a referrer), b: signed (legacy .sig), c: unsigned, d: signed by
    // another key.
    for (repo, seed) in [("a", 7400), ("b", 7401), ("c", 7402), ("d", 7403)] {
        let image = images::oci_manifest(seed);
        push_image(&src.url(), &format!("team/{repo}"), "v1", &image).await;
        let at = format!("{}/team/{repo}@{}", src.host(), image.digest());
        match repo {
            "a" => sign(trusted.path(), &at, false),
            "b" => sign(trusted.path(), &at, true),
            "d" => sign(stranger.path(), &at, false),
            _ => {}
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let list: String = ["a", "b", "c", "d"]
        .iter()
        .map(|r| format!("{}/team/{r} {}/mirror/{r} v1\n", src.host(), front.host()))
        .collect();
    std::fs::write(dir.path().join("images-list"), list).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(dir.path().join("images-list"))
        .arg("--insecure-registry")
        .arg(format!("{},{}", src.host(), front.host()))
        .arg("run")
        .arg("--require-signature")
        .arg(trusted.path().join("cosign.pub"))
        .env("DOCKER_CONFIG", dir.path())
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("2 copied, 0 already present, 2 failed (2 unsigned), 2 signatures verified"),
        "{said}"
    );
    assert!(
        said.contains("team/c@sha256:") && said.contains("no cosign signature found"),
        "{said}"
    );
    assert!(
        said.contains("team/d@sha256:") && said.contains("none verified"),
        "{said}"
    );
    for repo in ["a", "b"] {
        let src_digest = crane::digest(&format!("{}/team/{repo}:v1", src.host()));
        assert_eq!(
            crane::digest(&format!("{}/mirror/{repo}:v1", dst.host())),
            src_digest
        );
    }
    let writes: Vec<_> = front
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .filter(|r| r.target.contains("/mirror/c/") || r.target.contains("/mirror/d/"))
        .collect();
    assert!(writes.is_empty(), "written for unsigned images: {writes:?}");
    // A key file that is not a key is named.
    std::fs::write(dir.path().join("bad.pub"), "not a key").unwrap();
    let out = copy(
        &[src.host(), dst.host()],
        dir.path(),
        &[
            "--require-signature",
            dir.path().join("bad.pub").to_str().unwrap(),
            &format!("{}/team/a:v1", src.host()),
            &format!("{}/x/a:v1", dst.host()),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad.pub"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_rule_with_referrers_turns_them_on_for_its_images_only() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (app, _) = push_with_sbom(&src, "team/app", 7500).await;
    let (other, _) = push_with_sbom(&src, "team/other", 7510).await;
    let dir = tempfile::tempdir().unwrap();
    let list = format!(
        "{s}/team/app {d}/mirror/app v1\n{s}/team/other {d}/mirror/other v1\n",
        s = src.host(),
        d = dst.host()
    );
    std::fs::write(dir.path().join("images-list"), list).unwrap();
    let config = json!({
        "app": {
            "images": [format!("{}/team/app", src.host())],
            "versionSource": "registry",
            "referrers": true,
        },
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let run = |config: &str| {
        Command::new(env!("CARGO_BIN_EXE_image-mirror"))
            .arg("--images-list")
            .arg(dir.path().join("images-list"))
            .arg("--config")
            .arg(dir.path().join(config))
            .arg("--insecure-registry")
            .arg(format!("{},{}", src.host(), dst.host()))
            .arg("run")
            .env("DOCKER_CONFIG", dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
            .env_remove("AMQP_URL")
            .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
            .output()
            .unwrap()
    };
    let out = run("config.json");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("2 copied") && said.contains("1 referrers and digest tags"),
        "{said}"
    );
    assert_eq!(
        fallback_entries(dst.host(), "mirror/app", app.digest()).len(),
        1
    );
    let out = Command::new(tools::path("crane"))
        .args(["manifest", "--insecure"])
        .arg(format!(
            "{}/mirror/other:{}",
            dst.host(),
            fallback_tag(other.digest())
        ))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the other image's referrers were copied"
    );

    // A rule whose flag is not a boolean is named, with its key, and the copies go on
    // without the rules' asks.
    let bad = json!({"app": {"images": ["x/y"], "versionSource": "registry", "referrers": "yes"}});
    std::fs::write(dir.path().join("bad.json"), bad.to_string()).unwrap();
    let out = run("bad.json");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("key app.referrers"), "{}", text(&out));
    assert!(text(&out).contains("not applied"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_the_referrers_api_is_read_page_by_page_and_lists_them_itself() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (src_hook, at_source) = image_mirror_testkit::referrers_api::hook(1);
    let (dst_hook, at_target) = image_mirror_testkit::referrers_api::hook(1);
    let with = |hook| FrontOptions {
        hook: Some(hook),
        ..FrontOptions::default()
    };
    let (src_front, dst_front) = (
        Front::start(src.host(), with(src_hook)),
        Front::start(dst.host(), with(dst_hook)),
    );
    let image = images::oci_manifest(7600);
    push_image(
        &format!("http://{}", src_front.host()),
        "team/app",
        "v1",
        &image,
    )
    .await;
    let mut artifacts = Vec::new();
    for (seed, kind) in [
        (7601, SBOM_TYPE),
        (7602, SBOM_TYPE),
        (7603, "application/x-sig"),
    ] {
        let a = images::artifact(seed, kind, Some(image.top()));
        let url = format!("http://{}", src_front.host());
        push_image(&url, "team/app", &a.digest().to_string(), &a).await;
        artifacts.push(a);
    }
    assert_eq!(at_source.referrers("team/app", image.digest()).len(), 3);

    let cache = tempfile::tempdir().unwrap();
    let hosts = [src_front.host(), dst_front.host()];
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let src_ref = format!("{}/team/app:v1", src_front.host());
    let dst_ref = format!("{}/mirror/app:v1", dst_front.host());
    let out = copy(&hosts, cache.path(), &["--referrers", &src_ref, &dst_ref]);
    assert!(out.status.success(), "{}", text(&out));
    // Three pages of one for the image (the Link followed), then one (empty) for each of
    // its referrers, whose own referrers are looked for too.
    assert_eq!(at_source.pages_served(), 3 + 3);
    let listed: Vec<Value> = at_target.referrers("mirror/app", image.digest());
    let digests: Vec<&str> = listed.iter().filter_map(|d| d["digest"].as_str()).collect();
    let expected: Vec<&str> = artifacts.iter().map(|a| a.digest().as_str()).collect();
    assert_eq!(digests, expected);
    for a in &artifacts {
        let at = format!("{}/mirror/app@{}", dst.host(), a.digest());
        assert_eq!(crane::manifest(&at), a.top().bytes);
    }
    // The target lists them by itself: no fallback tag was written there.
    let fallback = format!("{}/mirror/app:{}", dst.host(), fallback_tag(image.digest()));
    let out = Command::new(tools::path("crane"))
        .args(["manifest", "--insecure", &fallback])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a fallback tag was written at a registry with the API"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_made_on_the_index_verifies_against_a_copy_of_some_of_its_platforms() {
    let src = Registry::start();
    let dst =
        Registry::start_with(&image_mirror_testkit::registry::RegistryOptions::sparse_indexes());
    let dir = keys();
    let d = dir.path();
    let image = images::oci_index(7300);
    push_image(&src.url(), "team/multi", "v1", &image).await;
    sign(
        d,
        &format!("{}/team/multi@{}", src.host(), image.digest()),
        true,
    );

    let to = format!("{}/mirror/multi:v1", dst.host());
    let args = [
        "--platforms",
        "linux/amd64,linux/arm64",
        "--digest-tags",
        &format!("{}/team/multi:v1", src.host()),
        &to,
    ];
    let out = copy(&[src.host(), dst.host()], d, &args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        &crane::digest(&to),
        image.digest(),
        "the index digest is kept"
    );
    let out = verify(d, &to);
    assert!(
        out.status.success(),
        "cosign verify of the index signature at the target: {}",
        text(&out)
    );
}

/// `image-mirror <args>` in `dir`, plain HTTP to `hosts`.
fn image_mirror(hosts: &[&str], dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--insecure-registry")
        .arg(hosts.join(","))
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir)
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_image_carried_in_a_bundle_with_its_referrers_still_verifies() {
    let src = Registry::start();
    let dir = keys();
    let d = dir.path();
    let image = images::oci_index(7400);
    push_image(&src.url(), "team/signed", "v1", &image).await;
    let at_source = format!("{}/team/signed@{}", src.host(), image.digest());
    sign(d, &at_source, false);
    attest_sbom(d, &at_source, false);
    std::fs::write(
        d.join("images-list"),
        format!(
            "{}/team/signed registry.example.com/mirror/signed v1\n",
            src.host()
        ),
    )
    .unwrap();
    let out = image_mirror(
        &[src.host()],
        d,
        &["export", "--referrers", "--output", "bundle"],
    );
    assert!(out.status.success(), "{}", text(&out));
    drop(src);

    let dst = Registry::start_with(
        &image_mirror_testkit::registry::RegistryOptions::default()
            .on(image_mirror_testkit::Implementation::Distribution3),
    );
    let args = [
        "import",
        "--referrers",
        "--input",
        "bundle",
        "--dest-registry",
        dst.host(),
    ];
    let out = image_mirror(&[dst.host()], d, &args);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("referrers"), "{said}");
    let at_target = format!("{}/mirror/signed:v1", dst.host());
    assert_eq!(&crane::digest(&at_target), image.digest());
    let out = verify(d, &at_target);
    assert!(
        out.status.success(),
        "cosign verify after the bundle: {}",
        text(&out)
    );
    let out = verify_attestation(d, &at_target);
    assert!(
        out.status.success(),
        "cosign verify-attestation after the bundle: {}",
        text(&out)
    );
}
