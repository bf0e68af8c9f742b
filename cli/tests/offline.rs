//! The main job on a machine where no registry host resolves: it ends in seconds, names each
//! failed entry once and each unreachable host once, and writes plain text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use image_mirror_common::ImagesList;

#[test]
fn a_run_where_no_host_resolves_ends_fast_and_says_why_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let list = root.join("images-list");
    let entries = ImagesList::load(&list).unwrap().entries().count();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(&list)
        .arg("--config")
        .arg(root.join("config.json"))
        .arg("run")
        .env("DOCKER_CONFIG", dir.path())
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        // The resolver gives up at once wherever this runs: one try, one second at most.
        .env("RES_OPTIONS", "timeout:1 attempts:1")
        .env("LOCALDOMAIN", "invalid")
        .env("HOSTALIASES", dir.path().join("no-aliases"))
        .env_remove("AMQP_URL")
        .env_remove("RUST_LOG")
        .env_remove("DEST_REGISTRY_OVERRIDE")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "colour codes in the output"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("failed: ")).collect();
    let hosts: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("unreachable: "))
        .collect();
    assert_eq!(failed.len(), entries, "{stderr}");
    assert!(
        failed.iter().all(|l| l.contains(": unreachable: ")),
        "{stderr}"
    );
    // docker.io, quay.io and registry.k8s.io, each once.
    let named: HashSet<&str> = hosts
        .iter()
        .filter_map(|l| l.strip_prefix("unreachable: ")?.split(':').next())
        .collect();
    assert_eq!(
        named,
        HashSet::from(["registry-1.docker.io", "quay.io", "registry.k8s.io"]),
        "{stderr}"
    );
    assert_eq!(hosts.len(), 3, "{stderr}");
    assert!(
        hosts
            .iter()
            .all(|l| l.contains("the host name does not resolve (is this machine online?)")),
        "{stderr}"
    );
    // Nothing else: no retry chatter, no second line per job.
    assert_eq!(lines.len(), failed.len() + hosts.len(), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "0 copied, 0 already present, {entries} failed ({entries} unreachable)"
        )),
        "{stdout}"
    );
}
