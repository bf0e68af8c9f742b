//! `image-mirror tags [KEY...]`: what discovery finds per config.json key, as JSON. Nothing
//! is published; exit 1 when a key failed (the others are still printed).

use anyhow::Result;

use crate::args::TagsArgs;
use crate::discovery::{discover_keys, report_json, Discovering};
use crate::exit::{FAILED, OK};
use crate::outln;

pub async fn run(args: &TagsArgs) -> Result<u8> {
    let found = discover_keys(
        &Discovering {
            plan: &args.plan,
            registry: &args.registry,
            discovery: &args.discovery,
        },
        &args.keys,
    )
    .await?;
    let json: Vec<_> = found.reports.iter().map(report_json).collect();
    outln!("{}", serde_json::to_string_pretty(&json)?);
    Ok(if found.failed_rules() == 0 {
        OK
    } else {
        FAILED
    })
}
