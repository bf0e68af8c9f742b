//! The fleet: bytes sent to the target registry (counted by a request-buffering front before
//! it) by worker processes with `--fleet on` and with `--fleet off`, for images sharing a
//! base, and for a worker killed halfway through a 1 GiB blob.

use std::path::Path;
use std::time::{Duration, Instant};

use image_mirror_testkit::fleet::{self, upload_bytes, HeldUpload};
use image_mirror_testkit::workers::{stop, Deployment};
use image_mirror_testkit::{Front, FrontOptions, Registry};

use crate::MIB;

const WITHIN: Duration = Duration::from_secs(300);

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB as f64)
}

/// Three workers, six images sharing a 256 MiB base, into a fresh registry: bytes sent.
async fn shared_base(binary: &Path, src: &Registry, fleet: &str) -> (u64, f64) {
    let dst = Registry::start();
    let front = Front::start(dst.host(), FrontOptions::default());
    let d = Deployment::new(
        binary,
        "bench-fleet",
        &[src.host().to_owned(), front.host()],
    );
    let workers: Vec<_> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| d.worker(w, &["--fleet", fleet]))
        .collect();
    let started = Instant::now();
    d.publish(&fleet::sharing_base_list(src, &front.host(), 6));
    d.events(6, WITHIN).await;
    let took = started.elapsed().as_secs_f64();
    for w in workers {
        stop(w);
    }
    d.tear_down().await;
    (upload_bytes(&front.requests()), took)
}

/// A worker killed when its upload of a 1 GiB blob is halfway (its chunk in flight held by
/// the front), another finishing the job: bytes sent in all.
async fn killed_halfway(binary: &Path, src: &Registry, size: u64, fleet: &str) -> u64 {
    let mut up = HeldUpload::start(binary, "bench-kill", src, size, &["--fleet", fleet]);
    let second = up.fleet.worker("second", &["--fleet", fleet]);
    up.first.kill().unwrap();
    up.first.wait().unwrap();
    up.fleet.events(1, WITHIN).await;
    stop(second);
    up.fleet.tear_down().await;
    upload_bytes(&up.front.requests())
}

/// The fleet scenario.
pub async fn fleet_scenario(binary: &Path) {
    let src = Registry::start();
    let distinct = fleet::push_sharing_base(&src, 6, 256 * MIB, 2801).await;
    let size = 1024 * MIB as u64;
    fleet::push_big(&src, size, 2820).await;

    println!("\n### fleet: bytes sent to the target registry (MiB)\n");
    println!("| scenario | distinct blob bytes | --fleet on | --fleet off | on / off |");
    println!("|---|---:|---:|---:|---:|");
    let (on, on_s) = shared_base(binary, &src, "on").await;
    let (off, off_s) = shared_base(binary, &src, "off").await;
    println!(
        "| 3 workers, 6 images sharing a 256 MiB base, fresh registry | {} | {} | {} | {:.2} |",
        mib(distinct),
        mib(on),
        mib(off),
        on as f64 / off as f64
    );
    let on_k = killed_halfway(binary, &src, size, "on").await;
    let off_k = killed_halfway(binary, &src, size, "off").await;
    println!(
        "| kill -9 halfway through a 1 GiB blob, another worker finishes | {} | {} | {} | {:.2} |",
        mib(size),
        mib(on_k),
        mib(off_k),
        on_k as f64 / off_k as f64
    );
    println!(
        "\nsent again after the kill: {} MiB with the fleet, {} MiB without; \
         shared base wall time {on_s:.1} s with the fleet, {off_s:.1} s without",
        mib(on_k.saturating_sub(size)),
        mib(off_k.saturating_sub(size))
    );
}
