//! `image-mirror tags [KEY...]`: what discovery finds per config.json key, as JSON. Nothing
//! is published; exit 1 when a key failed (the others are still printed).

use anyhow::Result;

use crate::args::{GlobalArgs, TagsArgs};
use crate::discovery::{discover_keys, report_json};
use crate::exit::{FAILED, OK};

pub async fn run(global: &GlobalArgs, args: &TagsArgs) -> Result<u8> {
    let found = discover_keys(global, &args.keys).await?;
    let json: Vec<_> = found.reports.iter().map(report_json).collect();
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(if found.failed() { FAILED } else { OK })
}
