//! `image-mirror status`: queue depths.

use anyhow::Result;

use crate::args::StatusArgs;
use crate::broker;
use crate::exit::OK;

pub async fn run(args: &StatusArgs) -> Result<u8> {
    let broker = broker::rabbitmq(&args.broker, "status").await?;
    let t = broker.topology().clone();
    println!("{:<40} {:>8} {:>10}  role", "queue", "ready", "consumers");
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
        println!("{:<40} {:>8} {:>10}  {role}", d.name, d.ready, d.consumers);
    }
    Ok(OK)
}
