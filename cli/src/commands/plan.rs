//! `image-mirror plan`: what `run` over the same inputs would cost (see
//! `image_mirror_worker::copy::Cost`), the pulls it spends first, then each target registry,
//! then the totals and the time under `--max-bandwidth`; `--output json` as one document.

use anyhow::Result;
use image_mirror_common::rate::HostRate;
use image_mirror_common::MirrorJob;
use image_mirror_producer::only_missing;
use image_mirror_worker::{CopyEngine, Cost};
use serde_json::json;

use crate::args::PlanArgs;
use crate::exit::{FAILED, OK};
use crate::outln;
use crate::planning::{plan, print_missing};
use crate::registry_client;

pub async fn run(args: &PlanArgs) -> Result<u8> {
    let (_, jobs) = plan(&args.plan, args.filter.as_deref())?;
    let engine = registry_client::engine(&args.registry, &args.transfer)?
        .with_platforms(args.plan.platforms.platforms.clone());
    let jobs: Vec<MirrorJob> = if args.missing {
        let missing = only_missing(engine.client(), jobs).await;
        if !args.output.json() {
            print_missing(&missing);
        }
        missing.jobs
    } else {
        jobs
    };
    let cost = engine.cost(&jobs).await;
    let seconds = seconds_at(&cost, &args.transfer.max_bandwidth);
    if args.output.json() {
        outln!("{}", document(&engine, &cost, seconds));
    } else {
        print(&engine, &cost, seconds);
    }
    Ok(if cost.errors.is_empty() { OK } else { FAILED })
}

/// How long sending the bytes takes under `caps` (the process's cap for all of them, each
/// host's for its own; the slowest), when capped.
pub fn seconds_at(cost: &Cost, caps: &[HostRate]) -> Option<f64> {
    let mut longest: Option<f64> = None;
    for cap in caps {
        let bytes = match &cap.host {
            None => cost.bytes_sent(),
            Some(host) => cost
                .targets
                .iter()
                .filter(|t| &t.registry == host || t.registry.split(':').next() == Some(host))
                .map(|t| t.bytes_sent)
                .sum(),
        };
        let secs = bytes as f64 / cap.rate.bytes_per_second() as f64;
        longest = Some(longest.map_or(secs, |l: f64| l.max(secs)));
    }
    longest
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn print(engine: &CopyEngine, cost: &Cost, seconds: Option<f64>) {
    for (registry, q) in engine.client().quotas() {
        let left = q
            .remaining
            .map(|r| {
                format!(
                    ", {r} left of {}",
                    q.limit.map_or("?".into(), |l| l.to_string())
                )
            })
            .unwrap_or_default();
        outln!(
            "source {registry}: {} pulls to read manifests, {} HEADs{left}",
            q.pulls,
            q.heads
        );
    }
    for t in &cost.targets {
        outln!(
            "target {}: {} manifests, {} blobs to send ({}), {} mounted ({} saved), {} already there",
            t.registry,
            t.manifests,
            t.blobs_sent,
            mib(t.bytes_sent),
            t.blobs_mounted,
            mib(t.bytes_mounted),
            t.blobs_present
        );
    }
    for (job, why) in &cost.errors {
        outln!("error    {job}: {why}");
    }
    outln!("{}", totals_line(cost, seconds));
}

/// The plan's totals in one line.
pub fn totals_line(cost: &Cost, seconds: Option<f64>) -> String {
    let time = seconds.map_or(String::new(), |s| {
        format!("; about {s:.0}s under --max-bandwidth")
    });
    format!(
        "plan: {} to copy, {} up to date; {} to send ({} bytes), {} saved by mounts and shared blobs{time}",
        cost.to_copy,
        cost.up_to_date,
        mib(cost.bytes_sent()),
        cost.bytes_sent(),
        mib(cost.bytes_mounted())
    )
}

/// The plan's totals as JSON.
pub fn totals(cost: &Cost, seconds: Option<f64>) -> serde_json::Value {
    json!({
        "to_copy": cost.to_copy,
        "up_to_date": cost.up_to_date,
        "bytes_sent": cost.bytes_sent(),
        "bytes_mounted": cost.bytes_mounted(),
        "seconds_at_cap": seconds,
    })
}

fn document(engine: &CopyEngine, cost: &Cost, seconds: Option<f64>) -> serde_json::Value {
    let sources: Vec<_> = engine
        .client()
        .quotas()
        .into_iter()
        .map(|(registry, q)| {
            json!({"registry": registry, "pulls": q.pulls, "heads": q.heads,
                   "remaining": q.remaining, "limit": q.limit})
        })
        .collect();
    let targets: Vec<_> = cost
        .targets
        .iter()
        .map(|t| {
            json!({"registry": t.registry, "manifests": t.manifests, "blobs_sent": t.blobs_sent,
                   "bytes_sent": t.bytes_sent, "blobs_mounted": t.blobs_mounted,
                   "bytes_mounted": t.bytes_mounted, "blobs_present": t.blobs_present})
        })
        .collect();
    let errors: Vec<_> = cost
        .errors
        .iter()
        .map(|(job, why)| json!({"job": job, "error": why}))
        .collect();
    json!({
        "sources": sources,
        "targets": targets,
        "totals": totals(cost, seconds),
        "errors": errors,
    })
}
