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
use serde_json::{json, Value};
use tokio::process::Command;

use crate::args::CheckArgs;
use crate::exit::{BadInput, FAILED, OK};
use crate::outln;
use crate::registry_client;

/// What the check found, line by line for people or as one JSON document.
struct Findings {
    json: bool,
    rows: Vec<Value>,
    failures: usize,
}

impl Findings {
    /// One finding: its state (`ok`, `missing`, `error`, `removed`, `twice`, `order`), what
    /// it is about, and the detail.
    fn add(&mut self, state: &str, subject: &str, detail: &str) {
        if state != "ok" {
            self.failures += 1;
        }
        if self.json {
            self.rows
                .push(json!({"state": state, "subject": subject, "detail": detail}));
        } else {
            outln!("{state:<8} {subject}{detail}");
        }
    }

    /// The last line (or the document), and the exit status.
    fn end(self, added: usize, base: &str) -> u8 {
        let failures = self.failures;
        if self.json {
            outln!(
                "{}",
                json!({"base": base, "added": added, "failed": failures, "findings": self.rows})
            );
        } else if added == 0 {
            outln!("check: no entries added since {base}, {failures} failed");
        } else {
            outln!("check: {added} entries added since {base}, {failures} failed");
        }
        if failures == 0 {
            OK
        } else {
            FAILED
        }
    }
}

pub async fn run(args: &CheckArgs) -> Result<u8> {
    let path = args.plan.images_list();
    let current = ImagesList::load(path).map_err(|e| BadInput(e.to_string()))?;
    let base = list_at(path, &args.base).await?;
    let added = added_since(base.as_ref(), &current);
    let mut found = Findings {
        json: args.output.json(),
        rows: Vec::new(),
        failures: 0,
    };
    list_problems(
        &mut found,
        path,
        &current,
        base.as_ref(),
        &added,
        &args.base,
    );
    if added.is_empty() {
        return Ok(found.end(0, &args.base));
    }
    let registry = registry_client::client(&args.registry, None)?;
    for (entry, tag) in added.iter().zip(source_tags(&registry, &added).await) {
        let what = format!("{}:{}", entry.source.short(), entry.tag);
        match tag {
            SourceTag::Exists(digest) => found.add("ok", &what, &format!(" ({digest})")),
            SourceTag::Missing => {
                found.add("missing", &what, ": the tag does not exist at the source");
            }
            SourceTag::Unknown(e) => found.add("error", &what, &format!(": {e}")),
        }
    }
    let repos = TargetRepos {
        registry: &registry,
        hub: &registry_client::hub(&args.hub, &registry)?,
        overrides: &crate::planning::overrides(&args.plan)?,
    };
    let known = base.unwrap_or_default();
    for problem in repos.problems_of_new(&known, &added).await {
        found.add("missing", &problem.to_string(), "");
    }
    Ok(found.end(added.len(), &args.base))
}

/// What is wrong with the list itself, each named: lines removed since the base, a target
/// tag listed from two sources, an entry out of `sort -V` order.
fn list_problems(
    found: &mut Findings,
    path: &Path,
    current: &ImagesList,
    base: Option<&ImagesList>,
    added: &[&image_mirror_common::Entry],
    rev: &str,
) {
    for entry in removed_since(base, current) {
        found.add(
            "removed",
            &entry.line(),
            &format!(": the line is gone since {rev} (mirrored tags stay listed)"),
        );
    }
    for c in conflicts(current, added) {
        found.add(
            "twice",
            &format!("{}:{}", c.second.target.short(), c.second.tag),
            &format!(
                ": listed from {} and from {}",
                c.first.source.short(),
                c.second.source.short()
            ),
        );
    }
    if let Some(d) = current.first_disorder() {
        found.add(
            "order",
            &format!("{}:{}", path.display(), d.line),
            &format!(
                ": out of order: {:?} must come before line {}",
                d.text, d.after_line
            ),
        );
    }
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
