//! Jobs from images-list lines: the one place the target overrides of the command line
//! (`--dest-registry`, `--dest-org`) are applied, for sync, discovery and add-tag alike.

use image_mirror_common::reference::ReferenceError;
use image_mirror_common::{Entry, MirrorJob, Origin, Repository};

/// Where targets go instead of where images-list says.
#[derive(Debug, Clone, Default)]
pub struct TargetOverrides {
    /// Replace the target registry; several mirror every entry to each of them.
    pub registries: Vec<String>,
    /// Replace the target organisation (first path component).
    pub org: Option<String>,
}

impl TargetOverrides {
    /// The targets `target` stands for under these overrides.
    pub fn apply(&self, target: &Repository) -> Result<Vec<Repository>, ReferenceError> {
        let base = match &self.org {
            Some(org) => target.with_org(org)?,
            None => target.clone(),
        };
        if self.registries.is_empty() {
            return Ok(vec![base]);
        }
        self.registries
            .iter()
            .map(|r| base.with_registry(r))
            .collect()
    }

    /// The job that mirrors `entry` to every target it stands for (the source is read once
    /// for all of them), keeping the listed target for the line to record.
    pub fn job_for(
        &self,
        entry: &Entry,
        record: bool,
        origin: Origin,
    ) -> Result<Option<MirrorJob>, ReferenceError> {
        let targets = self.apply(&entry.target)?;
        let Some((first, rest)) = targets.split_first() else {
            return Ok(None);
        };
        let mut job = MirrorJob::new(
            entry.source.clone(),
            first.clone(),
            entry.tag.clone(),
            record,
            origin,
        )
        .listed_as(&entry.target);
        job.also_to = rest.to_vec();
        Ok(Some(job))
    }

    /// The jobs of `entries`.
    pub fn jobs_for(
        &self,
        entries: &[Entry],
        record: bool,
        origin: &Origin,
    ) -> Result<Vec<MirrorJob>, ReferenceError> {
        let mut jobs = Vec::new();
        for entry in entries {
            jobs.extend(self.job_for(entry, record, origin.clone())?);
        }
        Ok(jobs)
    }
}
