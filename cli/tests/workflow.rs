//! The workflow of a project that mirrors into its own namespace: a mirrored tag is never
//! overwritten by accident (drift is kept and reported, overwriting is a decision with a
//! backup tag), and a `--missing` pass costs one request per target repository.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::push::{push_image, push_manifest};
use image_mirror_testkit::{crane, Front, FrontOptions, Registry};

fn image_mirror(list: &Path, hosts: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(list)
        .arg("--insecure-registry")
        .arg(hosts.join(","))
        .args(args)
        .env("DOCKER_CONFIG", list.parent().unwrap())
        .env(
            "IMAGE_MIRROR_CACHE_DIR",
            list.parent().unwrap().join("cache"),
        )
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// The manifest PUTs and upload requests a registry has logged.
fn writes(registry: &Registry) -> Vec<String> {
    registry
        .requests()
        .into_iter()
        .filter(|r| !r.starts_with("GET") && !r.starts_with("HEAD"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_pointed_source_tag_is_kept_as_drift_until_overwriting_is_asked_for() {
    let src = Registry::start();
    let dst = Registry::start();
    let first = images::oci_manifest(7100);
    let second = images::oci_index(7101);
    push_image(&src.url(), "team/app", "v1", &first).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    std::fs::write(
        &list,
        format!("{}/team/app {}/mirror/app v1\n", src.host(), dst.host()),
    )
    .unwrap();
    let hosts = [src.host(), dst.host()];
    let out = image_mirror(&list, &hosts, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let at = format!("{}/mirror/app:v1", dst.host());
    assert_eq!(&crane::digest(&at), first.digest());

    // Upstream moves v1 to another image.
    push_image(&src.url(), "team/app", "v1", &second).await;
    let before = writes(&dst).len();
    let out = image_mirror(&list, &hosts, &["run"]);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "drift alone is not a failure: {t}"
    );
    assert!(
        t.contains(&format!(
            "drifted: {}/team/app:v1 -> {}/mirror/app:v1: the target holds {}, the source {}",
            src.host(),
            dst.host(),
            first.digest(),
            second.digest()
        )),
        "{t}"
    );
    assert!(
        t.contains("0 copied, 0 already present, 0 failed, 1 drifted"),
        "{t}"
    );
    assert_eq!(&crane::digest(&at), first.digest(), "the target was kept");
    assert_eq!(
        writes(&dst).len(),
        before,
        "a drifted run wrote to the target"
    );

    let out = image_mirror(&list, &hosts, &["run", "--fail-on-drift"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Overwriting is a decision, and the old image stays reachable by its backup tag.
    let out = image_mirror(
        &list,
        &hosts,
        &[
            "run",
            "--on-drift",
            "overwrite",
            "--backup-tag",
            "{tag}-{digest12}",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("1 copied, 0 already present, 0 failed"), "{t}");
    assert_eq!(&crane::digest(&at), second.digest());
    let backup = format!(
        "{}/mirror/app:v1-{}",
        dst.host(),
        &first.digest().encoded()[..12]
    );
    assert_eq!(&crane::digest(&backup), first.digest(), "the backup tag");
    let mut tags = String::from_utf8(
        Command::new(image_mirror_testkit::tools::path("crane"))
            .args(["ls", "--insecure", &format!("{}/mirror/app", dst.host())])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    tags.sort();
    assert_eq!(
        tags,
        [
            "v1".to_owned(),
            format!("v1-{}", &first.digest().encoded()[..12])
        ],
        "nothing else was tagged"
    );

    // A bad template is bad input, named.
    let out = image_mirror(
        &list,
        &hosts,
        &[
            "run",
            "--on-drift",
            "overwrite",
            "--backup-tag",
            "{tag}-old",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--backup-tag"), "{}", text(&out));
}

/// `repos` repositories of `tags` tags each, of one image.
async fn tagged(registry: &Registry, prefix: &str, repos: usize, tags: usize, image: &Image) {
    let http = reqwest::Client::new();
    for r in 0..repos {
        let repo = format!("{prefix}/app{r:02}");
        push_image(&registry.url(), &repo, "v1", image).await;
        for t in 2..=tags {
            push_manifest(&http, &registry.url(), &repo, &format!("v{t}"), image.top()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pass_reads_each_target_repository_once_and_asks_the_source_nothing() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = images::oci_manifest(7200);
    tagged(&src, "team", 20, 11, &image).await;
    tagged(&dst, "mirror", 20, 10, &image).await;
    let src_front = Front::start(src.host(), FrontOptions::default());
    let dst_front = Front::start(dst.host(), FrontOptions::default());
    let mut lines = Vec::new();
    for r in 0..20 {
        for t in 1..=10 {
            lines.push(format!(
                "{}/team/app{r:02} {}/mirror/app{r:02} v{t}",
                src_front.host(),
                dst_front.host()
            ));
        }
    }
    lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let hosts = [src_front.host(), dst_front.host()];
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();

    let out = image_mirror(&list, &hosts, &["run", "--missing"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("missing: 0 targets lack their tag, 200 present and left alone (20 target repositories read)"),
        "{t}"
    );
    let at_target = dst_front.requests();
    assert!(
        at_target.len() <= 20,
        "{} requests at the target: {:?}",
        at_target.len(),
        at_target.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    assert_eq!(src_front.requests().len(), 0, "the source was asked");

    // One line whose tag the target lacks: that one is copied, the others left alone.
    lines.push(format!(
        "{}/team/app07 {}/mirror/app07 v11",
        src_front.host(),
        dst_front.host()
    ));
    lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let out = image_mirror(&list, &hosts, &["run", "--missing"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("missing: 1 targets lack their tag, 200 present"),
        "{t}"
    );
    assert!(t.contains("1 copied, 0 already present, 0 failed"), "{t}");
    assert_eq!(
        &crane::digest(&format!("{}/mirror/app07:v11", dst.host())),
        image.digest()
    );
}
