//! `run` against a target registry that refuses writes (distribution's read-only maintenance
//! mode answers every write with 405): the entry is named with what is wrong, and the others
//! are mirrored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{crane, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_names_an_entry_whose_target_refuses_writes_and_mirrors_the_others() {
    let src = Registry::start();
    let open = Registry::start();
    let read_only = Registry::start_with(&RegistryOptions {
        read_only: true,
        ..RegistryOptions::default()
    });
    let a = images::oci_index(9900);
    let b = images::oci_manifest(9901);
    push_image(&src.url(), "team/a", "v1", &a).await;
    push_image(&src.url(), "team/b", "v1", &b).await;
    let dir = tempfile::tempdir().unwrap();
    let list = format!(
        "{s}/team/a {o}/mirror/a v1\n{s}/team/b {r}/mirror/b v1\n",
        s = src.host(),
        o = open.host(),
        r = read_only.host()
    );
    std::fs::write(dir.path().join("images-list"), list).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(dir.path().join("images-list"))
        .arg("--insecure-registry")
        .arg(format!(
            "{},{},{}",
            src.host(),
            open.host(),
            read_only.host()
        ))
        .arg("run")
        .env("DOCKER_CONFIG", dir.path())
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap();
    let t =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("1 copied, 0 already present, 1 failed (1 target_refused)"),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "target_refused: {}/mirror/b: the registry refuses writes (read-only?)",
            read_only.host()
        )),
        "{t}"
    );
    assert_eq!(
        &crane::digest(&format!("{}/mirror/a:v1", open.host())),
        a.digest()
    );
}
