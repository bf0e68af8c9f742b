//! `image-mirror check [--base REV]`: the pull-request check. No line of images-list at REV
//! (git) may be gone, no added line may list a target tag another source already writes, the
//! entries must be in `sort -V` order; the entries added since REV must name source tags that
//! exist, and target repositories new to images-list that exist (Docker Hub's repositories
//! API) or are created on push (other registries). Each failure is named; exit 1 if any. The
//! rules are the producer's; this reads git and prints.

use std::path::Path;

use anyhow::{Context, Result};
use image_mirror_common::ImagesList;
use image_mirror_producer::{
    added_since, conflicts, removed_since, source_tags, SourceTag, TargetRepos,
};
use tokio::process::Command;

use crate::args::CheckArgs;
use crate::exit::{BadInput, FAILED, OK};
use crate::registry_client;

pub async fn run(args: &CheckArgs) -> Result<u8> {
    let path = args.plan.images_list();
    let current = ImagesList::load(path).map_err(|e| BadInput(e.to_string()))?;
    let base = list_at(path, &args.base).await?;
    let added = added_since(base.as_ref(), &current);
    let mut failures = list_problems(path, &current, base.as_ref(), &added, &args.base);
    if added.is_empty() {
        println!(
            "check: no entries added since {}, {failures} failed",
            args.base
        );
        return Ok(if failures == 0 { OK } else { FAILED });
    }
    let registry = registry_client::client(&args.registry, None)?;
    for (entry, found) in added.iter().zip(source_tags(&registry, &added).await) {
        let what = format!("{}:{}", entry.source.short(), entry.tag);
        match found {
            SourceTag::Exists(digest) => println!("ok       {what} ({digest})"),
            SourceTag::Missing => {
                failures += 1;
                println!("missing  {what}: the tag does not exist at the source");
            }
            SourceTag::Unknown(e) => {
                failures += 1;
                println!("error    {what}: {e}");
            }
        }
    }
    let repos = TargetRepos {
        registry: &registry,
        hub: &registry_client::hub(&args.hub, &registry)?,
        overrides: &crate::planning::overrides(&args.plan)?,
    };
    let known = base.unwrap_or_default();
    for problem in repos.problems_of_new(&known, &added).await {
        failures += 1;
        println!("missing  {problem}");
    }
    println!(
        "check: {} entries added since {}, {failures} failed",
        added.len(),
        args.base
    );
    Ok(if failures == 0 { OK } else { FAILED })
}

/// What is wrong with the list itself, each named: lines removed since the base, a target
/// tag listed from two sources, an entry out of `sort -V` order. How many.
fn list_problems(
    path: &Path,
    current: &ImagesList,
    base: Option<&ImagesList>,
    added: &[&image_mirror_common::Entry],
    rev: &str,
) -> usize {
    let mut failures = 0;
    for entry in removed_since(base, current) {
        failures += 1;
        println!(
            "removed  {}: the line is gone since {rev} (mirrored tags stay listed)",
            entry.line()
        );
    }
    for c in conflicts(current, added) {
        failures += 1;
        println!(
            "twice    {}:{}: listed from {} and from {}",
            c.second.target.short(),
            c.second.tag,
            c.first.source.short(),
            c.second.source.short()
        );
    }
    if let Some(d) = current.first_disorder() {
        failures += 1;
        println!(
            "order    {}:{}: out of order: {:?} must come before line {}",
            path.display(),
            d.line,
            d.text,
            d.after_line
        );
    }
    failures
}

/// images-list as it was at `rev`, or `None` when the file did not exist there.
async fn list_at(path: &Path, rev: &str) -> Result<Option<ImagesList>> {
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
        .await
        .context("running git")?;
    if !verify.status.success() {
        return Err(BadInput(format!("--base {rev}: not a git revision here")).into());
    }
    let show = Command::new("git")
        .current_dir(dir)
        .arg("show")
        .arg(format!("{rev}:./{name}"))
        .output()
        .await
        .context("running git")?;
    if !show.status.success() {
        return Ok(None);
    }
    let list =
        ImagesList::parse_named(&show.stdout, &format!("{name} at {rev}")).map_err(BadInput)?;
    Ok(Some(list))
}
