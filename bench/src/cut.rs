//! A cut in the middle of a 1 GiB upload: the connection carrying the target's 512th MiB is
//! cut once, by a TCP proxy before the target registry, for image-mirror, regctl and skopeo,
//! into distribution 2.8 and 3. What counts is the bytes each tool sent the registry in all
//! (the blob once is 1 GiB; the rest was sent again), and whether the copy ended whole. A
//! tool that does not end within three minutes is killed and counted as hung.

use std::path::Path;

use image_mirror_testkit::fault_proxy::{FaultProxy, Faults};
use image_mirror_testkit::registry::{Implementation, RegistryOptions};
use image_mirror_testkit::{crane, Registry};

use crate::copy::{copy_args_image_mirror, copy_args_skopeo};
use crate::measure::try_measure_within;

/// How long a tool may take after the cut before it counts as hung.
const HUNG_AFTER: std::time::Duration = std::time::Duration::from_secs(180);
use crate::{MIB, SKOPEO};

/// One tool's copy through the cut.
struct Row {
    tool: &'static str,
    into: &'static str,
    result: Result<f64, String>,
    sent: u64,
}

/// The cut scenario.
pub async fn cut_scenario(binary: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let size = 1024 * MIB;
    let (src, from, digest) = crate::copy::big_image(4545).await;
    let mut rows = Vec::new();
    for (into, implementation) in [
        ("distribution 2.8", Implementation::Distribution2),
        ("distribution 3", Implementation::Distribution3),
    ] {
        for tool in ["image-mirror", "regctl", "skopeo"] {
            let dst = Registry::start_with(&RegistryOptions {
                implementation,
                ..RegistryOptions::default()
            });
            let proxy = FaultProxy::start(
                dst.host(),
                Faults {
                    cut_upstream_after: Some(512 * MIB as u64),
                    ..Faults::default()
                },
            );
            let to = format!("{}/big/blob:v1", proxy.host());
            let hosts = [src.host().to_owned(), proxy.host()];
            let (program, args) = match tool {
                "image-mirror" => (
                    binary.to_owned(),
                    copy_args_image_mirror(&from, &to, [&hosts[0], &hosts[1]]),
                ),
                "skopeo" => (SKOPEO.into(), copy_args_skopeo(&from, &to)),
                _ => (
                    crate::peers::regctl(),
                    crate::peers::regctl_copy_args(&from, &to, &hosts),
                ),
            };
            let mut result =
                try_measure_within(&program, &args, cache.path(), HUNG_AFTER).map(|u| u.wall);
            if result.is_ok() && crane::digest(&format!("{}/big/blob:v1", dst.host())) != digest {
                result = Err("the target does not hold the source digest".into());
            }
            rows.push(Row {
                tool,
                into,
                result,
                sent: proxy.bytes_up(),
            });
        }
    }
    report(&rows, size as u64);
}

fn report(rows: &[Row], size: u64) {
    println!("\n### a cut at the 512th MiB of a 1 GiB upload\n");
    println!("| tool | into | wall s | MiB sent in all | MiB sent again | result |");
    println!("|---|---|---:|---:|---:|---|");
    for r in rows {
        let sent = r.sent as f64 / MIB as f64;
        let again = r.sent.saturating_sub(size) as f64 / MIB as f64;
        match &r.result {
            Ok(wall) => println!(
                "| {} | {} | {wall:.2} | {sent:.1} | {again:.1} | copied, digest-exact |",
                r.tool, r.into
            ),
            Err(e) => println!(
                "| {} | {} | | {sent:.1} | | failed: {} |",
                r.tool,
                r.into,
                e.lines().next().unwrap_or("").replace('|', "/")
            ),
        }
    }
}
