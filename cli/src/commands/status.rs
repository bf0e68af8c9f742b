//! `image-mirror status`: queue depths; with `--runs`, the last runs' summaries.

use anyhow::Result;

use crate::args::StatusArgs;
use crate::broker;
use crate::broker::Patience;
use crate::exit::{BadInput, OK};
use crate::notifications;
use crate::outln;

pub async fn run(args: &StatusArgs) -> Result<u8> {
    if let Some(n) = args.runs {
        return runs(args, n);
    }
    let broker = broker::rabbitmq(&args.broker, "status", Patience::Once).await?;
    let t = broker.topology().clone();
    let json = args.output.json();
    if !json {
        outln!("{:<40} {:>8} {:>10}  role", "queue", "ready", "consumers");
    }
    let mut rows = Vec::new();
    for d in broker.depths().await? {
        let role = if d.name == t.jobs() {
            "jobs"
        } else if d.name == t.dead() {
            "dead"
        } else if d.name == t.committer() {
            "events"
        } else {
            "retrying"
        };
        if json {
            rows.push(serde_json::json!({"queue": d.name, "ready": d.ready, "consumers": d.consumers, "role": role}));
        } else {
            outln!("{:<40} {:>8} {:>10}  {role}", d.name, d.ready, d.consumers);
        }
    }
    // What the workers say of the fleet's bandwidth, over two of their heartbeats.
    let words = match &broker {
        image_mirror_queue::Broker::Amqp(amqp) => {
            let span = image_mirror_queue::fleet_bandwidth::HEARTBEAT * 2
                + std::time::Duration::from_millis(200);
            image_mirror_queue::fleet_bandwidth::overhear(amqp, span)
                .await
                .unwrap_or_default()
        }
        image_mirror_queue::Broker::Memory(_) => Vec::new(),
    };
    let moving = words.iter().filter(|w| w.busy).count();
    let rate: u64 = words.iter().map(|w| w.moved).sum();
    let cap = words.iter().map(|w| w.cap).max().unwrap_or(0);
    if json {
        outln!(
            "{}",
            serde_json::json!({"queues": rows, "bandwidth": {
                "workers": words.len(), "moving": moving,
                "bytes_per_second": rate, "cap_bytes_per_second": cap,
            }})
        );
    } else if !words.is_empty() {
        let cap = if cap == 0 {
            "no cap".to_owned()
        } else {
            format!(
                "the fleet's cap {}",
                image_mirror_common::rate::Rate::per_second(cap)
            )
        };
        outln!(
            "bandwidth: {} workers sharing it, {moving} moving {} ({cap})",
            words.len(),
            image_mirror_common::rate::Rate::per_second(rate.max(1))
        );
    }
    Ok(OK)
}

/// `status --runs N`: the last runs, newest first.
fn runs(args: &StatusArgs, n: usize) -> Result<u8> {
    let Some(history) = notifications::history(args.cache_dir.as_deref()) else {
        return Err(BadInput("no cache folder: give --cache-dir".into()).into());
    };
    let runs = history.last(n).map_err(|e| BadInput(e.to_string()))?;
    if args.output.json() {
        outln!("{}", serde_json::json!({ "runs": runs }));
        return Ok(OK);
    }
    if runs.is_empty() {
        outln!("no run recorded yet");
    }
    for r in &runs {
        outln!(
            "{}  {}",
            r.started.format("%Y-%m-%d %H:%M:%S UTC"),
            r.headline()
        );
        for p in r
            .failures
            .iter()
            .chain(&r.drifted)
            .chain(&r.deferred)
            .take(5)
        {
            outln!("    {} ({}): {}", p.job, p.class, p.message);
        }
        let more = r.failures.len() + r.drifted.len() + r.deferred.len();
        if more > 5 {
            outln!("    … and {} more", more - 5);
        }
        if let Some(pr) = &r.pull_request {
            outln!("    pull request: {pr}");
        }
    }
    Ok(OK)
}
