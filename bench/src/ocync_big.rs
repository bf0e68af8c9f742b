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

use crate::measure::{measure, report_many, try_measure_within};
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

    // Three rounds, the order of the tools turned each round; each round's table, then the
    // median of each tool's wall time.
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); TOOLS.len()];
    for round in 0..3 {
        let mut rows = Vec::new();
        for k in 0..TOOLS.len() {
            let i = (k + round) % TOOLS.len();
            let tool = TOOLS[i];
            let dst = Registry::start_with(&tls);
            let work = dir.path().join(format!("plain-{tool}-{round}"));
            let (program, args) = command(tool, binary, &ocync, src.host(), dst.host(), &work);
            let usage = measure(&program, &args, &work.join("cache"));
            assert_eq!(
                crane::digest(&format!("{}/big/blob:v1", dst.host())),
                digest,
                "{tool}"
            );
            walls[i].push(usage.wall);
            rows.push((tool, usage));
        }
        rows.sort_by_key(|(tool, _)| TOOLS.iter().position(|t| t == tool));
        report_many(
            &format!(
                "1 GiB blob over TLS, round {}: image-mirror, ocync, regctl",
                round + 1
            ),
            &rows,
            1.0,
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = walls.iter_mut().map(median).collect();
    println!(
        "\nmedian wall s: image-mirror {:.2}, ocync {:.2}, regctl {:.2}; image-mirror / ocync {:.2}, / regctl {:.2}",
        medians[0],
        medians[1],
        medians[2],
        medians[0] / medians[1],
        medians[0] / medians[2]
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
            let entries = [(
                "big/blob".to_owned(),
                "big/blob".to_owned(),
                "v1".to_owned(),
            )];
            let yaml = crate::ocync::config_yaml(src, dst, &entries, &work.join("ocync-cache"));
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
