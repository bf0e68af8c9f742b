//! Wiring notices: a notifier from `--notify` and its flags, the history file in the cache
//! folder, and a run's end told (history first, then the notice, within its bound).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use image_mirror_notify::{Notice, Notifier, RunFinished, RunHistory, RunStatus};
use image_mirror_worker::copy::MountIndex;

use crate::args::NotifyFlags;
use crate::exit::BadInput;

/// The notifier of `role`'s `--notify` flags (one with no URL sends nothing); a URL that is not
/// `http(s)` is bad input.
pub fn notifier(flags: &NotifyFlags, role: &str) -> Result<Arc<Notifier>> {
    Ok(Notifier::new(flags.options(role)).map_err(|e| BadInput(e.to_string()))?)
}

/// The history of runs in the cache folder (`cache_dir`, else the default one).
pub fn history(cache_dir: Option<&Path>) -> Option<RunHistory> {
    let dir: Option<PathBuf> = cache_dir
        .map(Path::to_owned)
        .or_else(MountIndex::default_dir);
    dir.map(|d| RunHistory::in_dir(&d))
}

/// Keeps `run` in the history (a failure to is a warning) and tells of it, within the
/// notifier's bound; never changes what the run returns.
pub async fn run_ended(notifier: &Notifier, history: Option<&RunHistory>, run: RunFinished) {
    if let Some(h) = history {
        if let Err(e) = h.append(&run) {
            tracing::warn!("the run was not kept in the history: {e}");
        }
    }
    notifier.send(&Notice::RunFinished(run)).await;
}

/// Tells of a run in this process of `role` that began at `started`, came to `m` and exits
/// with `status`.
pub async fn mirrored(
    notifier: &Notifier,
    cache_dir: Option<&Path>,
    role: &str,
    started: chrono::DateTime<chrono::Utc>,
    m: &crate::pipeline::Mirrored,
    status: u8,
) {
    let mut run = RunFinished::of_events(role, started, &m.events);
    run.new_images = m.recorded.iter().map(|e| e.line()).collect();
    run.status = match (m.stopped.is_some(), status) {
        (true, _) => RunStatus::Interrupted,
        (false, crate::exit::OK) => RunStatus::Succeeded,
        (false, _) => RunStatus::Failed,
    };
    run_ended(notifier, history(cache_dir).as_ref(), run).await;
}

/// What a producer's pass came to: jobs published, and what failed (a discovery rule's key,
/// or the pass itself).
pub struct Pass {
    pub published: usize,
    pub failures: Vec<image_mirror_notify::JobProblem>,
}

/// Tells of a producer's pass of `role` that began at `started`: its result, or the error that
/// ended it.
pub async fn pass_ended(
    notifier: &Notifier,
    cache_dir: Option<&Path>,
    role: &str,
    started: chrono::DateTime<chrono::Utc>,
    outcome: std::result::Result<&Pass, &anyhow::Error>,
) {
    let mut run = RunFinished::of_events(role, started, &[]);
    match outcome {
        Ok(pass) => {
            run.counts.published = pass.published as u64;
            run.failures.clone_from(&pass.failures);
            run.counts.failed = pass.failures.len() as u64;
        }
        Err(e) => {
            run.failures.push(image_mirror_notify::JobProblem {
                job: role.to_owned(),
                class: "pass_failed".into(),
                message: format!("{e:#}"),
            });
            run.counts.failed = 1;
        }
    }
    if run.counts.failed > 0 {
        run.status = RunStatus::Failed;
    }
    run_ended(notifier, history(cache_dir).as_ref(), run).await;
}
