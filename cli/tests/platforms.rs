//! Choosing platforms (`--platforms`, a config.json rule's `platforms`) against real
//! registries, checked with crane and skopeo: into distribution 3 taking sparse indexes, the
//! source's index lands with only the chosen platforms (the digest kept; the others absent, and
//! none of their blobs read at the source, counted at a front); into distribution 2.8 and
//! distribution 3's default, which refuse that, an index of the chosen platforms alone (which
//! crane, skopeo and containerd read), both digests said, or with `--on-sparse-refused fail` nothing tagged. A second run reads no
//! manifest body at the source and copies nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use image_mirror_common::{Digest, JobEvent, Outcome};
use image_mirror_testkit::http::Logged;
use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{crane, skopeo, tools, Front, FrontOptions, Implementation, Registry};
use serde_json::Value;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// `image-mirror --insecure-registry HOSTS <args>` with its cache in `dir`.
fn image_mirror(hosts: &[&str], dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--insecure-registry")
        .arg(hosts.join(","))
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir)
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_PLATFORMS")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

/// One entry of a test index: its platform as the report writes it, its digest, its blobs.
struct Entry {
    platform: String,
    digest: Digest,
    blobs: Vec<Digest>,
}

/// The entries of `image`'s top index, each with the blobs of its manifest.
fn entries(image: &Image) -> Vec<Entry> {
    let index: Value = serde_json::from_slice(&image.top().bytes).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let digest: Digest = e["digest"].as_str().unwrap().parse().unwrap();
            let p = &e["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or(""),
                p["architecture"].as_str().unwrap_or("")
            );
            if let Some(v) = p["variant"].as_str() {
                platform.push_str(&format!("/{v}"));
            }
            if let Some(v) = p["os.version"].as_str() {
                platform.push_str(&format!(":{v}"));
            }
            let child = image.manifests.iter().find(|m| m.digest == digest).unwrap();
            let manifest: Value = serde_json::from_slice(&child.bytes).unwrap();
            let blobs = std::iter::once(&manifest["config"])
                .chain(manifest["layers"].as_array().unwrap())
                .map(|d| d["digest"].as_str().unwrap().parse().unwrap())
                .collect();
            Entry {
                platform,
                digest,
                blobs,
            }
        })
        .collect()
}

/// The status of a HEAD of `what` (`manifests/<ref>` or `blobs/<digest>`) in `repo`.
async fn head(registry: &Registry, repo: &str, what: &str) -> u16 {
    reqwest::Client::new()
        .head(format!("{}/v2/{repo}/{what}", registry.url()))
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Blob GETs among `requests`.
fn blob_gets(requests: &[Logged]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/blobs/"))
        .map(|r| r.target.clone())
        .collect()
}

/// `crane pull --platform P image` into `dir`: whether it succeeded, and what it said.
fn crane_pull(image: &str, platform: &str, dir: &Path) -> (bool, String) {
    let out = Command::new(tools::path("crane"))
        .args(["pull", "--insecure", "--platform", platform, image])
        .arg(dir.join("pulled.tar"))
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_index_keeps_the_source_digest_and_only_the_chosen_platforms_cross() {
    let src = Registry::start();
    let front = Front::start(src.host(), FrontOptions::default());
    let dst = Registry::start_with(&RegistryOptions::sparse_indexes());
    let image = images::oci_index(4001);
    push_image(&src.url(), "up/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let hosts = [front.host(), dst.host().to_owned()];
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let (from, to) = (
        format!("{}/up/app:v1", front.host()),
        format!("{}/mirror/app:v1", dst.host()),
    );

    let out = image_mirror(
        &hosts,
        dir.path(),
        &[
            "copy",
            "--platforms",
            "linux/arm64,linux/amd64",
            "--output",
            "json",
            &from,
            &to,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["digest"], image.digest().to_string());
    assert_eq!(
        report["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    assert_eq!(
        report["platform_subset"]["offered"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert!(
        report["platform_subset"]["rewritten_digest"].is_null(),
        "{report}"
    );

    // The target's tag is the source's index, byte for byte, as crane and skopeo read it.
    assert_eq!(&crane::digest(&to), image.digest());
    assert_eq!(&skopeo::manifest_digest(&to), image.digest());
    assert_eq!(crane::manifest(&to), image.top().bytes);
    let (pulled, said) = crane_pull(&to, "linux/arm64", dir.path());
    assert!(pulled, "crane pull of a kept platform: {said}");

    // The chosen platforms are there; the others, and their blobs, are not, and none of
    // their blobs was read at the source.
    let fetched = blob_gets(&front.requests());
    for entry in entries(&image) {
        let kept =
            entry.platform.starts_with("linux/amd64") || entry.platform.starts_with("linux/arm64");
        let manifest = head(&dst, "mirror/app", &format!("manifests/{}", entry.digest)).await;
        assert_eq!(manifest, if kept { 200 } else { 404 }, "{}", entry.platform);
        for blob in &entry.blobs {
            let at_target = head(&dst, "mirror/app", &format!("blobs/{blob}")).await;
            assert_eq!(
                at_target,
                if kept { 200 } else { 404 },
                "{} blob",
                entry.platform
            );
            let read = fetched.iter().any(|t| t.contains(blob.as_str()));
            assert_eq!(read, kept, "{} blob read at the source", entry.platform);
        }
    }

    // Again: nothing copied, no manifest body and no blob read at the source.
    let (pulls, requests) = (front.pulls(), front.requests().len());
    let out = image_mirror(
        &hosts,
        dir.path(),
        &["copy", "--platforms", "linux/amd64,linux/arm64", &from, &to],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("already present"), "{said}");
    assert_eq!(
        front.pulls(),
        pulls,
        "a second run read a manifest at the source"
    );
    assert!(blob_gets(&front.requests()[requests..]).is_empty());
}

/// `run` of one entry with `args`, its report's one event.
fn run_one(hosts: &[&str], dir: &Path, line: &str, args: &[&str]) -> (Output, JobEvent) {
    std::fs::write(dir.join("images-list"), format!("{line}\n")).unwrap();
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut all = vec!["run", "--report", report.to_str().unwrap()];
    all.extend(args);
    let out = image_mirror(hosts, dir, &all);
    let events: Vec<JobEvent> = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("{e}: {}", text(&out))),
    )
    .unwrap();
    assert_eq!(events.len(), 1, "{}", text(&out));
    (out, events.into_iter().next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_refuses_a_sparse_index_gets_an_index_of_the_chosen_platforms_alone() {
    let src = Registry::start();
    let front = Front::start(src.host(), FrontOptions::default());
    let image = images::oci_index(4002);
    push_image(&src.url(), "up/app", "v1", &image).await;
    let containerd = image_mirror_testkit::Containerd::start();
    for implementation in Implementation::ALL {
        let dst = Registry::start_with(&RegistryOptions::default().on(implementation));
        let dir = tempfile::tempdir().unwrap();
        let hosts = [front.host(), dst.host().to_owned()];
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let line = format!("{}/up/app {}/mirror/app v1", front.host(), dst.host());
        let to = format!("{}/mirror/app:v1", dst.host());

        let (out, event) = run_one(&hosts, dir.path(), &line, &["--platforms", "linux/amd64"]);
        let said = text(&out);
        assert!(out.status.success(), "{implementation:?}: {said}");
        assert_eq!(event.outcome, Outcome::Copied, "{event:?}");
        assert_eq!(
            event.digest.as_ref(),
            Some(image.digest()),
            "the source digest"
        );
        let subset = event.platform_subset.clone().unwrap();
        let rewritten = subset
            .rewritten_digest
            .clone()
            .expect("the target's digest");
        assert_ne!(&rewritten, image.digest());
        assert_eq!(event.platforms, ["linux/amd64"]);
        assert!(said.contains("platforms 1 of 4 (linux/amd64)"), "{said}");
        assert!(said.contains("1 indexes rewritten"), "{said}");

        // A valid index of the kept platform, which crane and skopeo read and pull.
        assert_eq!(crane::digest(&to), rewritten);
        assert_eq!(skopeo::manifest_digest(&to), rewritten);
        let index: Value = serde_json::from_slice(&crane::manifest(&to)).unwrap();
        let listed = index["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{index}");
        assert_eq!(listed[0]["platform"]["architecture"], "amd64");
        assert_eq!(
            index["annotations"]["image-mirror.source-digest"],
            image.digest().to_string()
        );
        let (pulled, said) = crane_pull(&to, "linux/amd64", dir.path());
        assert!(pulled, "{implementation:?}: crane pull: {said}");
        let fetched = containerd.fetch(&to, Some("linux/amd64"));
        let said = image_mirror_testkit::containerd::text(&fetched);
        assert!(
            fetched.status.success(),
            "{implementation:?}: ctr content fetch: {said}"
        );
        assert!(
            containerd.content().contains(&rewritten.to_string()),
            "{said}"
        );

        // Again: already present, no manifest body read at the source, no drift.
        let pulls = front.pulls();
        let (out, again) = run_one(&hosts, dir.path(), &line, &["--platforms", "linux/amd64"]);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert_eq!(again.outcome, Outcome::AlreadyPresent, "{again:?}");
        assert_eq!(again.bytes_copied, 0);
        assert_eq!(
            again.platform_subset.and_then(|s| s.rewritten_digest),
            Some(rewritten)
        );
        assert!(!said.contains("drifted"), "{said}");
        assert_eq!(
            front.pulls(),
            pulls,
            "{implementation:?}: a manifest read at the source"
        );

        // A dry run says the same.
        let out = image_mirror(
            &hosts,
            dir.path(),
            &["run", "--dry-run", "--platforms", "linux/amd64"],
        );
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("0 differ, 1 up to date"), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn told_to_fail_a_refused_sparse_index_tags_nothing_and_names_the_entry() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = images::oci_index(4003);
    push_image(&src.url(), "up/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let hosts = [src.host(), dst.host()];
    let line = format!("{}/up/app {}/mirror/app v1", src.host(), dst.host());
    let (out, event) = run_one(
        &hosts,
        dir.path(),
        &line,
        &["--platforms", "linux/amd64", "--on-sparse-refused", "fail"],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(event.outcome, Outcome::Failed);
    assert_eq!(event.error.unwrap().class, "sparse_refused");
    assert!(said.contains("up/app:v1 -> "), "{said}");
    assert!(said.contains("--on-sparse-refused rewrite"), "{said}");
    // No tag moved: neither the source's index nor one cut from it is at the target.
    assert_eq!(head(&dst, "mirror/app", "manifests/v1").await, 404);
    let index = image.digest().to_string();
    assert_eq!(
        head(&dst, "mirror/app", &format!("manifests/{index}")).await,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_attestations_and_windows_builds_keep_what_belongs_to_the_chosen_platform() {
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions::sparse_indexes());
    let dir = tempfile::tempdir().unwrap();
    let hosts = [src.host(), dst.host()];
    let cases: [(&str, Image, &str, &[&str]); 3] = [
        (
            "list",
            images::docker_manifest_list(4004),
            "linux/amd64",
            &["linux/amd64"],
        ),
        (
            "attested",
            images::oci_index_with_attestations(4005),
            "linux/amd64",
            &["linux/amd64"],
        ),
        (
            "windows",
            images::oci_index(4006),
            "windows/amd64",
            &["windows/amd64:10.0.17763.5820"],
        ),
    ];
    for (name, image, chosen, kept) in cases {
        push_image(&src.url(), &format!("up/{name}"), "v1", &image).await;
        let (from, to) = (
            format!("{}/up/{name}:v1", src.host()),
            format!("{}/mirror/{name}:v1", dst.host()),
        );
        let out = image_mirror(
            &hosts,
            dir.path(),
            &[
                "copy",
                "--platforms",
                chosen,
                "--output",
                "json",
                &from,
                &to,
            ],
        );
        assert!(out.status.success(), "{name}: {}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["platforms"], serde_json::json!(kept), "{name}");
        assert_eq!(&crane::digest(&to), image.digest(), "{name}");
        let entries = entries(&image);
        let attested: Option<Digest> = entries
            .iter()
            .find(|e| e.platform == "linux/amd64")
            .map(|e| e.digest.clone());
        let index: Value = serde_json::from_slice(&image.top().bytes).unwrap();
        for (entry, raw) in entries.iter().zip(index["manifests"].as_array().unwrap()) {
            let attests = raw["annotations"]["vnd.docker.reference.digest"]
                .as_str()
                .map(|d| d.parse::<Digest>().unwrap());
            let expected = match attests {
                Some(subject) => Some(&subject) == attested.as_ref() && name == "attested",
                None => kept.contains(&entry.platform.as_str()),
            };
            let status = head(
                &dst,
                &format!("mirror/{name}"),
                &format!("manifests/{}", entry.digest),
            )
            .await;
            assert_eq!(
                status,
                if expected { 200 } else { 404 },
                "{name}: {}",
                entry.platform
            );
        }
    }
}

#[tokio::test]
async fn chosen_platforms_the_source_lacks_are_named() {
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions::sparse_indexes());
    let image = images::oci_index(4007);
    push_image(&src.url(), "up/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let hosts = [src.host(), dst.host()];
    let from = format!("{}/up/app:v1", src.host());

    let to = format!("{}/mirror/app:v1", dst.host());
    let out = image_mirror(
        &hosts,
        dir.path(),
        &[
            "copy",
            "--platforms",
            "linux/amd64,linux/riscv64",
            &from,
            &to,
        ],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("platforms   1 of 4 (linux/amd64); not in the source: linux/riscv64"),
        "{said}"
    );

    let none = format!("{}/mirror/none:v1", dst.host());
    let out = image_mirror(
        &hosts,
        dir.path(),
        &[
            "copy",
            "--platforms",
            "linux/riscv64,linux/s390x",
            &from,
            &none,
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "none of the chosen platforms (linux/riscv64,linux/s390x) is in the source index"
        ),
        "{said}"
    );
    assert_eq!(head(&dst, "mirror/none", "manifests/v1").await, 404);
}

#[test]
fn an_unknown_platform_is_bad_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = image_mirror(
        &["127.0.0.1:9"],
        dir.path(),
        &[
            "copy",
            "--platforms",
            "linux/amd64,linux/amd46",
            "a/b:1",
            "c/d:1",
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("\"linux/amd46\": unknown architecture \"amd46\""),
        "{said}"
    );

    // In config.json, the rule and key are named, and nothing runs.
    std::fs::write(dir.path().join("images-list"), "a/b c/d 1\n").unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"app": {"versionSource": "none", "images": ["a/b"], "platforms": ["linux/arm65"]}}"#,
    )
    .unwrap();
    let out = image_mirror(&["127.0.0.1:9"], dir.path(), &["run"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("key app.platforms"), "{said}");
    assert!(said.contains("linux/arm65"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_chooses_the_platforms_of_its_images() {
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions::sparse_indexes());
    let image = images::oci_index(4008);
    push_image(&src.url(), "up/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        format!(
            r#"{{"app": {{"versionSource": "none", "images": ["{}/up/app"], "platforms": ["linux/arm64"]}}}}"#,
            src.host()
        ),
    )
    .unwrap();
    let hosts = [src.host(), dst.host()];
    let line = format!("{}/up/app {}/mirror/app v1", src.host(), dst.host());
    // The rule wins over --platforms for its image.
    let (out, event) = run_one(&hosts, dir.path(), &line, &["--platforms", "linux/amd64"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(event.platforms, ["linux/arm64/v8"]);
    assert_eq!(event.digest.as_ref(), Some(image.digest()));
    let validated = image_mirror(&hosts, dir.path(), &["validate"]);
    assert!(validated.status.success(), "{}", text(&validated));
}
