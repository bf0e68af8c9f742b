//! The 1 GiB blob over TLS, by image-mirror, ocync and regctl (ocync speaks only HTTPS): each
//! into an empty registry of its own, then each through a TCP proxy that cuts the connection
//! carrying the target's 512th MiB once, into distribution 2.8 and 3. Every finished copy is
//! read back with crane; what the cut cost is the bytes the proxy carried beyond the blob's own.

use std::path::{Path, PathBuf};

use image_mirror_testkit::fault_proxy::{FaultProxy, Faults};
use image_mirror_testkit::images::{self, Blob, Format, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::Implementation;
use image_mirror_testkit::tls::TestCa;
use image_mirror_testkit::{crane, tools, Registry, RegistryOptions};

use crate::measure::{report_many, try_measure_within};
use crate::MIB;

const TOOLS: [&str; 3] = ["image-mirror", "ocync", "regctl"];

/// How long a copy may take before it counts as hung.
const HUNG_AFTER: std::time::Duration = std::time::Duration::from_secs(180);

/// The scenario.
pub async fn ocync_big_scenario(binary: &Path) {
    let ocync = tools::path("ocync");
    if !ocync.exists() {
        println!("\n### ocync, 1 GiB\n\nnot built: run `bench/ocync PATH-TO-OCYNC-CHECKOUT` first");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    std::env::set_var("SSL_CERT_FILE", &ca.ca_cert);
    let tls = RegistryOptions::with_tls(&ca);
    let src = Registry::start_with(&tls);
    let layer = Blob::new(OCI_LAYER, images::random_bytes(4747, 1024 * MIB));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&src.url(), "big/blob", "v1", &image).await;
    let digest = image.digest().clone();

    let mut rows = Vec::new();
    for tool in TOOLS {
        let dst = Registry::start_with(&tls);
        let work = dir.path().join(format!("plain-{tool}"));
        let (program, args) = command(tool, binary, &ocync, src.host(), dst.host(), &work);
        let usage = try_measure_within(&program, &args, &work.join("cache"), HUNG_AFTER)
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert_eq!(
            crane::digest(&format!("{}/big/blob:v1", dst.host())),
            digest,
            "{tool}"
        );
        rows.push((tool, usage));
    }
    report_many(
        "1 GiB blob over TLS: image-mirror, ocync, regctl",
        &rows,
        1.0,
    );

    println!("\n### a cut at the 512th MiB of a 1 GiB upload, over TLS\n");
    println!("| tool | into | wall s | MiB sent in all | MiB sent again | result |");
    println!("|---|---|---:|---:|---:|---|");
    for (into, implementation) in [
        ("distribution 2.8", Implementation::Distribution2),
        ("distribution 3", Implementation::Distribution3),
    ] {
        for tool in TOOLS {
            let dst = Registry::start_with(&RegistryOptions {
                implementation,
                ..tls.clone()
            });
            let proxy = FaultProxy::start(
                dst.host(),
                Faults {
                    cut_upstream_after: Some(512 * MIB as u64),
                    ..Faults::default()
                },
            );
            let work = dir
                .path()
                .join(format!("cut-{tool}-{}", into.replace(' ', "")));
            let (program, args) = command(tool, binary, &ocync, src.host(), &proxy.host(), &work);
            let mut result = try_measure_within(&program, &args, &work.join("cache"), HUNG_AFTER)
                .map(|u| u.wall);
            if result.is_ok() && crane::digest(&format!("{}/big/blob:v1", dst.host())) != digest {
                result = Err("the target does not hold the source digest".into());
            }
            let sent = proxy.bytes_up() as f64 / MIB as f64;
            let again = (sent - 1024.0).max(0.0);
            match result {
                Ok(wall) => println!(
                    "| {tool} | {into} | {wall:.2} | {sent:.1} | {again:.1} | copied, digest-exact |"
                ),
                Err(e) => println!(
                    "| {tool} | {into} | | {sent:.1} | | failed: {} |",
                    e.lines().next().unwrap_or("").replace('|', "/")
                ),
            }
        }
    }
}

/// `tool` copying `big/blob:v1` from `src` to `dst` (hosts), its files in `work`.
fn command(
    tool: &str,
    binary: &Path,
    ocync: &Path,
    src: &str,
    dst: &str,
    work: &Path,
) -> (PathBuf, Vec<String>) {
    std::fs::create_dir_all(work).unwrap();
    let (from, to) = (format!("{src}/big/blob:v1"), format!("{dst}/big/blob:v1"));
    match tool {
        "image-mirror" => (
            binary.to_owned(),
            vec!["-q".into(), "copy".into(), from, to],
        ),
        "ocync" => {
            let yaml = format!(
                "global:\n  cache_dir: {}\nregistries:\n  src:\n    url: {src}\n  dst:\n    url: {dst}\n\
                 defaults:\n  source: src\n  targets: dst\n  artifacts:\n    enabled: false\n\
                 mappings:\n  - from: big/blob\n    to: big/blob\n    tags:\n      include: [\"v1\"]\n",
                work.join("ocync-cache").display()
            );
            let config = work.join("ocync.yaml");
            std::fs::write(&config, yaml).unwrap();
            (
                ocync.to_owned(),
                vec![
                    "sync".into(),
                    "-q".into(),
                    "-c".into(),
                    config.display().to_string(),
                ],
            )
        }
        _ => (
            crate::peers::regctl(),
            vec!["image".into(), "copy".into(), from, to],
        ),
    }
}
