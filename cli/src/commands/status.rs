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
    if json {
        outln!("{}", serde_json::json!({"queues": rows}));
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
