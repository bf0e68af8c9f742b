//! Many copies into one repository at once, as a first run of a real images-list makes them:
//! none fails, every tag is digest-exact, and each shared blob goes to the target once; in
//! distribution 2.8 and 3 by turns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Command;

use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{skopeo, FaultProxy, Faults, Implementation, Registry};

const MIB: usize = 1024 * 1024;

/// Two tags of a four-platform image whose platforms share their big layers.
fn two_tags_sharing_layers() -> Vec<(String, Image)> {
    let shared: Vec<Blob> = (0..4)
        .map(|i| Blob::new(OCI_LAYER, images::random_bytes(900 + i, MIB)))
        .collect();
    ["v1.0.0", "v1.1.0"]
        .iter()
        .enumerate()
        .map(|(t, tag)| {
            let children = Platform::four()
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    let own = Blob::new(
                        OCI_LAYER,
                        images::random_bytes(950 + 10 * t as u64 + i as u64, 2048),
                    );
                    let child =
                        images::single_with_layers(Format::Oci, &p, vec![shared[i].clone(), own]);
                    (p, child)
                })
                .collect();
            ((*tag).to_owned(), images::index_of(Format::Oci, children))
        })
        .collect()
}

/// Thirty tags of one repository on one base layer.
fn thirty_tags_on_one_base() -> Vec<(String, Image)> {
    let base = Blob::new(OCI_LAYER, images::random_bytes(990, 2 * MIB));
    (0..30)
        .map(|k| {
            let own = Blob::new(OCI_LAYER, images::random_bytes(1000 + k, 1024));
            let image = images::single_with_layers(
                Format::Oci,
                &Platform::LINUX_AMD64,
                vec![base.clone(), own],
            );
            (format!("1.{k}.0"), image)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_into_one_repository_at_once_never_fail_and_send_each_blob_once() {
    let src = Registry::start();
    let sets = [
        ("multi/app", two_tags_sharing_layers()),
        ("many/app", thirty_tags_on_one_base()),
    ];
    let mut lines = Vec::new();
    let mut distinct: HashMap<String, usize> = HashMap::new();
    for (repo, tags) in &sets {
        for (tag, image) in tags {
            push_image(&src.url(), repo, tag, image).await;
            lines.push(format!(
                "{}/{repo} mirror.invalid/team/{} {tag}",
                src.host(),
                repo.replace('/', "-")
            ));
            for b in &image.blobs {
                distinct.insert(b.digest.to_string(), b.bytes.len());
            }
        }
    }
    lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let blob_bytes: usize = distinct.values().sum();
    let smallest_shared = MIB;

    for round in 0..20 {
        let implementation = Implementation::ALL[round % 2];
        let dst = Registry::start_with(&RegistryOptions::default().on(implementation));
        let proxy = FaultProxy::start(dst.host(), Faults::default());
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
            .arg("--images-list")
            .arg(&list)
            .arg("--insecure-registry")
            .arg(format!("{},{}", src.host(), proxy.host()))
            .arg("--dest-registry")
            .arg(proxy.host())
            .arg("run")
            .arg("--workers")
            .arg("8")
            .env("DOCKER_CONFIG", cache.path())
            .env("IMAGE_MIRROR_CACHE_DIR", cache.path())
            .env_remove("AMQP_URL")
            .output()
            .unwrap();
        let t = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let round = format!("{round} ({implementation:?})");
        assert_eq!(out.status.code(), Some(0), "round {round}: {t}");
        assert!(
            t.contains("32 copied, 0 already present, 0 failed"),
            "round {round}: {t}"
        );
        for (repo, tags) in &sets {
            for (tag, image) in tags {
                let at = format!("{}/team/{}:{tag}", dst.host(), repo.replace('/', "-"));
                assert_eq!(
                    &skopeo::manifest_digest(&at),
                    image.digest(),
                    "round {round}: {at}"
                );
            }
        }
        // Every blob's bytes went up once: a shared blob sent twice would add at least its
        // size to what the proxy carried up (manifests and request heads are far less).
        let up = usize::try_from(proxy.bytes_up()).unwrap();
        assert!(
            up >= blob_bytes && up < blob_bytes + smallest_shared,
            "round {round}: {up} bytes went up for {blob_bytes} bytes of distinct blobs"
        );
    }
}
