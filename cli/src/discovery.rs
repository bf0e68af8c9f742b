//! Running config.json's rules for `tags`, `producer discover` and `run --discover`: the
//! sources (GitHub from the environment, registries from the flags), every key run
//! concurrently, and how the results are shown.

use anyhow::Result;
use futures_util::{stream, StreamExt};
use image_mirror_common::{Config, ImagesList, MirrorJob};
use image_mirror_github::GithubClient;
use image_mirror_producer::{discover, Helm, KeyReport, NewImages, Sources};
use serde_json::{json, Value};

use crate::args::{DiscoveryFlags, PlanFlags, RegistryFlags};
use crate::console::{say, Level};
use crate::exit::BadInput;
use crate::outln;
use crate::planning::overrides;
use crate::registry_client;

/// Keys run at once.
const CONCURRENT_KEYS: usize = 4;

/// What running config.json's rules reads from the command line.
pub struct Discovering<'a> {
    pub plan: &'a PlanFlags,
    pub registry: &'a RegistryFlags,
    pub discovery: &'a DiscoveryFlags,
}

/// The images-list discovery compared with, and one report per key run.
pub struct Found {
    /// The images-list as loaded.
    pub list: ImagesList,
    /// In config.json order.
    pub reports: Vec<KeyReport>,
}

impl Found {
    /// How many keys failed.
    pub fn failed_rules(&self) -> usize {
        self.reports.iter().filter(|r| !r.errors.is_empty()).count()
    }

    /// One job per new tag of every report, with the flags' target overrides.
    pub fn jobs(&self, plan: &PlanFlags) -> Result<Vec<MirrorJob>> {
        Ok(
            image_mirror_producer::jobs_of(&self.reports, &overrides(plan)?)
                .map_err(|e| BadInput(format!("target override: {e}")))?,
        )
    }
}

/// The tag sources the environment and the flags describe; new images a rule names go
/// where most of `list`'s targets are.
pub fn sources(flags: &Discovering, list: &ImagesList) -> Result<Sources> {
    let registry = registry_client::client(flags.registry, None)?;
    Ok(Sources {
        github: GithubClient::from_env().map_err(|e| BadInput(e.to_string()))?,
        hub: registry_client::hub(&flags.discovery.hub, &registry)?,
        registry,
        new_images: NewImages::for_list(list, None),
        overrides: overrides(flags.plan)?,
        helm: Helm {
            program: flags.discovery.helm.clone(),
            ..Helm::default()
        },
    })
}

/// Runs the rules named in `keys` (all when empty). An unknown key is bad input.
pub async fn discover_keys(flags: &Discovering<'_>, keys: &[String]) -> Result<Found> {
    let files = &flags.plan.files;
    let config = Config::load(&files.config).map_err(|e| BadInput(e.to_string()))?;
    let list = ImagesList::load(files.images_list()).map_err(|e| BadInput(e.to_string()))?;
    if let Some(unknown) = keys.iter().find(|k| config.rule(k).is_none()) {
        return Err(BadInput(format!("{}: no key {unknown:?}", files.config.display())).into());
    }
    let sources = sources(flags, &list)?;
    let rules: Vec<_> = config
        .rules()
        .iter()
        .filter(|r| keys.is_empty() || keys.contains(&r.key))
        .collect();
    let reports = stream::iter(rules)
        .map(|rule| discover(rule, &list, &sources))
        .buffered(CONCURRENT_KEYS)
        .collect()
        .await;
    Ok(Found { list, reports })
}

/// A report as JSON, images written as images-list writes them.
pub fn report_json(r: &KeyReport) -> Value {
    json!({
        "key": r.key,
        "source": r.source,
        "images": r.images.iter().map(|i| i.short()).collect::<Vec<_>>(),
        "found": r.found,
        "new": r.new.iter().map(|e| json!({
            "source": e.source.short(),
            "target": e.target.short(),
            "tag": e.tag.as_str(),
        })).collect::<Vec<_>>(),
        "errors": r.errors,
        "unsupported": r.unsupported,
    })
}

/// One line per key on stdout, and its errors on stderr.
pub fn print_key_lines(reports: &[KeyReport]) {
    for r in reports {
        if let Some(kind) = &r.unsupported {
            outln!(
                "{}: versionSource kind {kind:?} is not supported; skipped",
                r.key
            );
            continue;
        }
        outln!(
            "{}: {} found, {} new{}",
            r.key,
            r.found.len(),
            r.new.len(),
            if r.errors.is_empty() { "" } else { ", failed" }
        );
        for e in &r.errors {
            say(Level::Error, "rule_failed", format!("{}: {e}", r.key));
        }
    }
}
