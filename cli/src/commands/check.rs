//! `image-mirror check [--base REV]`: the original check-new-images-exist, for pull requests.
//! The entries images-list has now and did not have at REV (git) must name source tags that
//! exist; each failure is named; exit 1 if any.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use futures_util::{stream, StreamExt};
use image_mirror_common::{Entry, ImagesList};

use crate::args::{CheckArgs, GlobalArgs};
use crate::exit::{BadInput, FAILED, OK};
use crate::registry_client;

pub async fn run(global: &GlobalArgs, args: &CheckArgs) -> Result<u8> {
    let path = &global.images_list;
    let current = ImagesList::load(path).map_err(|e| BadInput(e.to_string()))?;
    let base = list_at(path, &args.base)?;
    let added: Vec<&Entry> = current
        .entries()
        .filter(|e| base.as_ref().is_none_or(|b| !b.contains(e)))
        .collect();
    if added.is_empty() {
        println!("check: no entries added since {}", args.base);
        return Ok(OK);
    }
    let registry = registry_client::client(global)?;
    let results: Vec<_> = stream::iter(added.iter())
        .map(|e| {
            let registry = &registry;
            async move { (e, registry.manifest_digest(&e.source, e.tag.as_str()).await) }
        })
        .buffered(8)
        .collect()
        .await;
    let mut failures = 0;
    for (entry, found) in results {
        let what = format!("{}:{}", entry.source.short(), entry.tag);
        match found {
            Ok(Some(digest)) => println!("ok       {what} ({digest})"),
            Ok(None) => {
                failures += 1;
                println!("missing  {what}: the tag does not exist at the source");
            }
            Err(e) => {
                failures += 1;
                println!("error    {what}: {e}");
            }
        }
    }
    println!(
        "check: {} entries added since {}, {failures} failed",
        added.len(),
        args.base
    );
    Ok(if failures == 0 { OK } else { FAILED })
}

/// images-list as it was at `rev`, or `None` when the file did not exist there.
fn list_at(path: &Path, rev: &str) -> Result<Option<ImagesList>> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BadInput(format!("{}: not a file name", path.display())))?;
    let verify = Command::new("git")
        .current_dir(dir)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{rev}^{{commit}}"))
        .output()
        .context("running git")?;
    if !verify.status.success() {
        return Err(BadInput(format!("--base {rev}: not a git revision here")).into());
    }
    let show = Command::new("git")
        .current_dir(dir)
        .arg("show")
        .arg(format!("{rev}:./{name}"))
        .output()
        .context("running git")?;
    if !show.status.success() {
        return Ok(None);
    }
    let list = ImagesList::parse(&show.stdout).map_err(|problems| {
        let first = problems
            .first()
            .map(|(line, p)| format!("line {line}: {p}"))
            .unwrap_or_default();
        BadInput(format!("{name} at {rev}: {first}"))
    })?;
    Ok(Some(list))
}
