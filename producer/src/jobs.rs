//! Jobs from images-list lines: the one place the target overrides of the command line
//! (`--dest-registry`, `--dest-org`, `--platforms`) and config.json's per-rule asks
//! (`referrers`, `digestTags`, `platforms`) are applied, for sync, discovery and add-tag alike.
//! A rule's `platforms` wins over `--platforms` for its images.

use image_mirror_common::reference::ReferenceError;
use image_mirror_common::{Config, Entry, MirrorJob, Platforms, Repository, Requester};

/// Where targets go instead of where images-list says, and which sources take their
/// signatures along.
#[derive(Debug, Clone, Default)]
pub struct TargetOverrides {
    /// Replace the target registry; several mirror every entry to each of them.
    pub registries: Vec<String>,
    /// Replace the target organisation (first path component).
    pub org: Option<String>,
    /// Sources whose referrers and digest tags travel with them, and their platforms.
    pub attach: AttachRules,
    /// The platforms of every image no rule chooses for (`--platforms`).
    pub platforms: Option<Platforms>,
}

/// The sources config.json's rules ask to take their referrers or digest tags along.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRules {
    /// Sources of rules with `referrers: true`.
    pub referrers: Vec<Repository>,
    /// Sources of rules with `digestTags: true`.
    pub digest_tags: Vec<Repository>,
    /// Sources of rules with `platforms`, and theirs (the first rule naming a source wins).
    pub platforms: Vec<(Repository, Platforms)>,
}

impl AttachRules {
    /// The images of the rules that ask for it.
    pub fn of(config: &Config) -> Self {
        let mut rules = Self::default();
        for rule in config.rules() {
            if rule.referrers {
                rules.referrers.extend(rule.images.iter().cloned());
            }
            if rule.digest_tags {
                rules.digest_tags.extend(rule.images.iter().cloned());
            }
            if let Some(platforms) = &rule.platforms {
                for image in &rule.images {
                    if !rules.platforms.iter().any(|(i, _)| i == image) {
                        rules.platforms.push((image.clone(), platforms.clone()));
                    }
                }
            }
        }
        rules
    }
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
        origin: Requester,
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
        job.referrers = self.attach.referrers.contains(&entry.source);
        job.digest_tags = self.attach.digest_tags.contains(&entry.source);
        job.platforms = self
            .attach
            .platforms
            .iter()
            .find(|(image, _)| *image == entry.source)
            .map(|(_, p)| p.clone())
            .or_else(|| self.platforms.clone());
        Ok(Some(job))
    }

    /// The jobs of `entries`.
    pub fn jobs_for(
        &self,
        entries: &[Entry],
        record: bool,
        origin: &Requester,
    ) -> Result<Vec<MirrorJob>, ReferenceError> {
        let mut jobs = Vec::new();
        for entry in entries {
            jobs.extend(self.job_for(entry, record, origin.clone())?);
        }
        Ok(jobs)
    }
}
