//! Benchmarks image-mirror against skopeo, regctl and regsync in one run, on the same data between local
//! registries, and prints wall time, CPU time, peak RSS and the ratios. Run it with
//! `bench/run`; it is not part of the tests.
//!
//! Scenarios (all by default, or those named after the binary's path):
//! - `corpus`: 20 four-platform images whose platforms share base layers, copied one after
//!   another, each tool into its own empty registry;
//! - `big-blob`: one image with a 1 GiB layer;
//! - `noop-run`: `image-mirror run` over a list the size of the real one, every entry already
//!   mirrored, against a loop of `skopeo inspect --raw` of source and target per entry;
//! - `publish`: `image-mirror producer sync` of 10,000 jobs to RabbitMQ with confirms;
//! - `pulls`: the manifest GETs (Docker Hub's pulls) each tool spends: first mirror, no-op,
//!   a new tag, three targets, at a metering front;
//! - `latency`: copies and a no-op run through fronts adding 25 ms to every request;
//! - `fleet`: bytes sent to the target by worker processes with `--fleet on` and `off`:
//!   images sharing a base, and a worker killed halfway through a 1 GiB blob;
//! - `ghcr`: the 1 GiB image into a front answering as GHCR does (bodies over 4 MiB refused),
//!   by image-mirror, skopeo and regctl, and into plain registries;
//! - `cut`: a cut at the 512th MiB of a 1 GiB upload, for image-mirror, regctl and skopeo,
//!   into distribution 2.8 and 3: the bytes sent again;
//! - `missing`: a no-op of the real list through 25 ms fronts, HEAD/HEAD against `--missing`;
//! - `broker`: the broker's memory and lease rate for 1k, 10k and 50k blobs through the fleet's
//!   coordination;
//! - `crash-resume`: bytes sent again after `kill -9` at 20 moments over a 1 GiB upload,
//!   into distribution 2.8 and 3;
//! - `ocync`: the corpus synced cold and again (a no-op) over TLS by image-mirror, ocync
//!   (built by `bench/ocync`) and regsync;
//! - `ocync-big`: the 1 GiB blob over TLS by image-mirror, ocync and regctl, plain and cut at
//!   its 512th MiB;
//! - `ocync-fronts`: image-mirror, ocync and the Go peers behind the latency, GHCR and metering
//!   fronts, over TLS;
//! - `soak`: 200 tags through three workers and the committer while workers are killed, the
//!   broker and the registry restarted and connections cut, on a seeded schedule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod broker;
mod copy;
mod crash_resume;
mod cut;
mod economy;
mod fleet;
mod measure;
mod ocync;
mod ocync_big;
mod ocync_fronts;
mod peers;
mod pipeline;
mod registries;
mod soak;

use std::path::PathBuf;

const MIB: usize = 1024 * 1024;
const SKOPEO: &str = "/usr/bin/skopeo";
const SCENARIOS: [&str; 16] = [
    "corpus",
    "big-blob",
    "noop-run",
    "publish",
    "pulls",
    "latency",
    "fleet",
    "ghcr",
    "cut",
    "missing",
    "broker",
    "crash-resume",
    "soak",
    "ocync",
    "ocync-big",
    "ocync-fronts",
];

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/image-mirror"));
    let mut chosen: Vec<String> = args.collect();
    if chosen.is_empty() {
        chosen = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    if let Some(unknown) = chosen.iter().find(|c| !SCENARIOS.contains(&c.as_str())) {
        eprintln!(
            "unknown scenario {unknown:?}; scenarios: {}",
            SCENARIOS.join(", ")
        );
        std::process::exit(2);
    }
    println!("# image-mirror vs skopeo, regctl, regsync and ocync, one run");
    for scenario in &chosen {
        match scenario.as_str() {
            "corpus" => copy::corpus_scenario(&binary).await,
            "big-blob" => copy::big_blob_scenario(&binary).await,
            "noop-run" => pipeline::noop_run_scenario(&binary).await,
            "pulls" => economy::pulls_scenario(&binary).await,
            "latency" => economy::latency_scenario(&binary).await,
            "fleet" => fleet::fleet_scenario(&binary).await,
            "ghcr" => registries::ghcr_scenario(&binary).await,
            "cut" => cut::cut_scenario(&binary).await,
            "missing" => pipeline::missing_scenario(&binary).await,
            "broker" => broker::broker_scenario().await,
            "crash-resume" => crash_resume::crash_resume_scenario(&binary).await,
            "soak" => soak::soak_scenario(&binary).await,
            "ocync" => ocync::ocync_scenario(&binary).await,
            "ocync-big" => ocync_big::ocync_big_scenario(&binary).await,
            "ocync-fronts" => ocync_fronts::ocync_fronts_scenario(&binary).await,
            _ => pipeline::publish_scenario(&binary).await,
        }
    }
}
