//! `--missing`: only the targets whose tag is absent. Each target repository's tag list is
//! read once (paged and capped by the registry client), instead of a HEAD per entry, and the
//! source is not asked at all: a no-op pass costs one request per target repository. A tag
//! that is present is never looked at again, so it is never overwritten, whatever its source
//! does (the daily full pass reports drift).

use std::collections::{HashMap, HashSet};

use futures_util::{stream, StreamExt};
use image_mirror_common::{MirrorJob, Repository};
use image_mirror_registry::RegistryClient;

/// Tag lists read at once.
const LISTS_AT_ONCE: usize = 8;

/// What `--missing` kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The jobs, each with only the targets that lack its tag.
    pub jobs: Vec<MirrorJob>,
    /// Target repositories whose tags were read.
    pub repositories: usize,
    /// Targets (entry and target) already holding their tag: left alone.
    pub present: usize,
    /// Repositories whose tag list could not be read: their jobs are kept, and the copy
    /// says what is wrong.
    pub unreadable: Vec<String>,
}

/// The jobs of `jobs` whose target tag is absent, each cut down to the targets that lack it.
pub async fn only_missing(client: &RegistryClient, jobs: Vec<MirrorJob>) -> Missing {
    let mut repos: Vec<Repository> = jobs.iter().flat_map(MirrorJob::targets).collect();
    repos.sort();
    repos.dedup();
    let listed: Vec<(Repository, Option<HashSet<String>>)> = stream::iter(repos)
        .map(|repo| async move {
            let tags = tags_of(client, &repo).await;
            (repo, tags)
        })
        .buffer_unordered(LISTS_AT_ONCE)
        .collect()
        .await;
    let repositories = listed.len();
    let mut unreadable = Vec::new();
    let mut tags: HashMap<Repository, HashSet<String>> = HashMap::new();
    for (repo, set) in listed {
        match set {
            Some(set) => {
                tags.insert(repo, set);
            }
            None => unreadable.push(repo.to_string()),
        }
    }
    unreadable.sort();
    let mut present = 0;
    let mut kept = Vec::new();
    for job in jobs {
        let targets = job.targets();
        let lacking: Vec<Repository> = targets
            .iter()
            .filter(|t| {
                tags.get(*t)
                    .is_none_or(|set| !set.contains(job.tag.as_str()))
            })
            .cloned()
            .collect();
        present += targets.len() - lacking.len();
        if let Some(job) = job.with_targets(&lacking) {
            kept.push(job);
        }
    }
    Missing {
        jobs: kept,
        repositories,
        present,
        unreadable,
    }
}

/// The tags of `repo`: empty for a repository that does not exist yet; `None` when they
/// cannot be read.
async fn tags_of(client: &RegistryClient, repo: &Repository) -> Option<HashSet<String>> {
    match client.list_tags(repo).await {
        Ok(tags) => Some(tags.into_iter().collect()),
        Err(image_mirror_registry::RegistryError::NotFound { .. }) => Some(HashSet::new()),
        Err(e) => {
            tracing::warn!(repository = %repo, error = %e, "could not read the tags; its entries are copied as if missing");
            None
        }
    }
}
