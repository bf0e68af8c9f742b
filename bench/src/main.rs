//! Benchmarks image-mirror against skopeo in one run, on the same data between local
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
//! - `missing`: a no-op of the real list through 25 ms fronts, HEAD/HEAD against `--missing`;
//! - `broker`: the broker's memory and lease rate for 1k, 10k and 50k blobs through the fleet's
//!   coordination.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod broker;
mod copy;
mod economy;
mod fleet;
mod measure;
mod pipeline;
mod registries;

use std::path::PathBuf;

const MIB: usize = 1024 * 1024;
const SKOPEO: &str = "/usr/bin/skopeo";
const SCENARIOS: [&str; 10] = [
    "corpus", "big-blob", "noop-run", "publish", "pulls", "latency", "fleet", "ghcr", "missing",
    "broker",
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
    println!("# image-mirror vs skopeo, one run");
    for scenario in &chosen {
        match scenario.as_str() {
            "corpus" => copy::corpus_scenario(&binary).await,
            "big-blob" => copy::big_blob_scenario(&binary).await,
            "noop-run" => pipeline::noop_run_scenario(&binary).await,
            "pulls" => economy::pulls_scenario(&binary).await,
            "latency" => economy::latency_scenario(&binary).await,
            "fleet" => fleet::fleet_scenario(&binary).await,
            "ghcr" => registries::ghcr_scenario(&binary).await,
            "missing" => pipeline::missing_scenario(&binary).await,
            "broker" => broker::broker_scenario().await,
            _ => pipeline::publish_scenario(&binary).await,
        }
    }
}
