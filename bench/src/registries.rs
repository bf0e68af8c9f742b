//! Registries that differ: the 1 GiB image into a front that answers as GHCR does (request
//! bodies over 4 MiB refused with 416), by image-mirror, skopeo and regctl, each into a
//! registry of its own; and the same copies into plain registries, for what the limit costs.

use std::path::Path;

use image_mirror_testkit::{crane, Front, FrontOptions, Quirk, Registry};

use crate::copy::{copy_args_image_mirror, copy_args_skopeo};
use crate::measure::{try_measure, Usage};
use crate::{MIB, SKOPEO};

/// One tool's copy: its usage, or the first line of why it failed.
struct Attempt {
    tool: &'static str,
    into: &'static str,
    result: Result<Usage, String>,
    bytes_taken: u64,
    refusals: u64,
}

fn args_of(
    tool: &str,
    from: &str,
    to: &str,
    hosts: &[String],
) -> (std::path::PathBuf, Vec<String>) {
    match tool {
        "image-mirror" => (
            std::path::PathBuf::new(),
            copy_args_image_mirror(from, to, [&hosts[0], &hosts[1]]),
        ),
        "skopeo" => (SKOPEO.into(), copy_args_skopeo(from, to)),
        _ => (
            crate::peers::regctl(),
            crate::peers::regctl_copy_args(from, to, hosts),
        ),
    }
}

/// The GHCR scenario.
pub async fn ghcr_scenario(binary: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let size = 1024 * MIB;
    let (src, from, digest) = crate::copy::big_image(4343).await;
    let mut attempts = Vec::new();
    for into in ["ghcr profile", "plain registry"] {
        for tool in ["image-mirror", "skopeo", "regctl"] {
            let dst = Registry::start();
            let front = Front::start(
                dst.host(),
                if into == "plain registry" {
                    FrontOptions::default()
                } else {
                    FrontOptions::quirk(Quirk::Ghcr)
                },
            );
            let to = format!("{}/big/blob:v1", front.host());
            let hosts = [src.host().to_owned(), front.host()];
            let (mut program, args) = args_of(tool, &from, &to, &hosts);
            if tool == "image-mirror" {
                program = binary.to_owned();
            }
            let mut result = try_measure(&program, &args, cache.path());
            if result.is_ok() && crane::digest(&format!("{}/big/blob:v1", dst.host())) != digest {
                result = Err("the target does not hold the source digest".into());
            }
            attempts.push(Attempt {
                tool,
                into,
                result,
                bytes_taken: front.bytes_taken(),
                refusals: front.quirk_refusals(),
            });
        }
    }
    report(&attempts, size as u64);
}

fn report(attempts: &[Attempt], size: u64) {
    println!(
        "\n### GHCR profile: one image with a 1 GiB layer (request bodies over 4 MiB refused)\n"
    );
    println!(
        "| tool | into | wall s | CPU s | peak RSS MiB | MiB sent | refused requests | result |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for a in attempts {
        let sent = a.bytes_taken as f64 / MIB as f64;
        match &a.result {
            Ok(u) => println!(
                "| {} | {} | {:.2} | {:.2} | {:.1} | {sent:.1} | {} | copied, digest-exact |",
                a.tool, a.into, u.wall, u.cpu, u.peak_rss_mib, a.refusals
            ),
            Err(e) => println!(
                "| {} | {} | | | | {sent:.1} | {} | failed: {} |",
                a.tool,
                a.into,
                a.refusals,
                e.lines().next().unwrap_or("").replace('|', "/")
            ),
        }
    }
    let wall = |tool: &str, into: &str| {
        attempts
            .iter()
            .find(|a| a.tool == tool && a.into == into)
            .and_then(|a| a.result.as_ref().ok())
            .map(|u| u.wall)
    };
    for rival in ["skopeo", "regctl"] {
        for into in ["ghcr profile", "plain registry"] {
            if let (Some(ours), Some(theirs)) = (wall("image-mirror", into), wall(rival, into)) {
                println!(
                    "\nimage-mirror / {rival} wall time, {into}: {:.2}",
                    ours / theirs
                );
            }
        }
    }
    if let (Some(capped), Some(plain)) = (
        wall("image-mirror", "ghcr profile"),
        wall("image-mirror", "plain registry"),
    ) {
        println!(
            "\nimage-mirror, GHCR profile / plain registry wall time: {:.2} ({} MiB blob in 4 MiB requests)",
            capped / plain,
            size / MIB as u64
        );
    }
}
