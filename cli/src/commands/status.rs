//! `image-mirror status`: queue depths.

use anyhow::Result;

use crate::args::StatusArgs;
use crate::broker;
use crate::broker::Patience;
use crate::exit::OK;
use crate::outln;

pub async fn run(args: &StatusArgs) -> Result<u8> {
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
