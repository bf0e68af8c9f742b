//! From the flags and files to the producer's inputs, shared by the commands that plan jobs
//! (`run`, `producer sync`, `add-tag`, `add-image`, `check`, discovery): the target overrides,
//! the jobs of images-list, and the line that says what `--missing` found.

use anyhow::Result;
use image_mirror_common::{Config, ImagesList, MirrorJob};
use image_mirror_producer::{plan_sync, AttachRules, Missing, TargetOverrides};
use regex::Regex;

use crate::args::PlanFlags;
use crate::exit::BadInput;
use crate::outln;

/// The target overrides of the flags, and config.json's `referrers`/`digestTags`/`platforms`
/// rules when the file exists. Commands that only copy do not otherwise need the file: one
/// that does not read as rules (a Docker `config.json` in the working folder, say) is named
/// in a warning and its per-rule asks are left out; `discover` and `validate` refuse it. A
/// rule's bad `platforms` is bad input: images would otherwise go with every platform.
pub fn overrides(flags: &PlanFlags) -> Result<TargetOverrides, BadInput> {
    let config = &flags.files.config;
    let attach = if config.exists() {
        match Config::load(config) {
            Ok(config) => AttachRules::of(&config),
            Err(e) if e.names_key_ending(".platforms") => return Err(BadInput(e.to_string())),
            Err(e) => {
                tracing::warn!("{e}; its referrers and digestTags rules are not applied");
                AttachRules::default()
            }
        }
    } else {
        AttachRules::default()
    };
    Ok(TargetOverrides {
        registries: flags.dest_registries.clone(),
        org: flags.dest_org.clone(),
        attach,
        platforms: flags.platforms.platforms.clone(),
    })
}

/// The images-list and one job per entry and target whose line matches `filter`; bad input
/// (the list, the regex, an override) is reported as such.
pub fn plan(flags: &PlanFlags, filter: Option<&str>) -> Result<(ImagesList, Vec<MirrorJob>)> {
    let list = ImagesList::load(flags.images_list()).map_err(|e| BadInput(e.to_string()))?;
    let filter = filter
        .map(Regex::new)
        .transpose()
        .map_err(|e| BadInput(format!("--filter: {e}")))?;
    let jobs = plan_sync(&list, filter.as_ref(), &overrides(flags)?)
        .map_err(|e| BadInput(format!("target override: {e}")))?;
    Ok((list, jobs))
}

/// One line on what `--missing` found.
pub fn print_missing(missing: &Missing) {
    let unreadable = if missing.unreadable.is_empty() {
        String::new()
    } else {
        format!(
            "; tags unreadable, copied as missing: {}",
            missing.unreadable.join(", ")
        )
    };
    outln!(
        "missing: {} targets lack their tag, {} present and left alone ({} target repositories read){unreadable}",
        missing.jobs.iter().map(|j| j.targets().len()).sum::<usize>(),
        missing.present,
        missing.repositories
    );
}
