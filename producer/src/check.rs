//! `check`, the pull-request check of the original tool: which lines images-list has now and
//! did not have at a base revision, whether each names a source tag that exists, and whether
//! each target repository new to images-list exists (or is created on push). `add-tag`,
//! `add-image` and discovery ask the same questions through the same functions.

use futures_util::{stream, StreamExt};
use image_mirror_common::{Digest, Entry, ImagesList, Repository};
use image_mirror_registry::dockerhub::DockerHub;
use image_mirror_registry::{RegistryClient, RepositoryStatus};

use crate::jobs::TargetOverrides;

/// What the source says about an entry's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTag {
    /// It exists, with this digest.
    Exists(Digest),
    /// It does not exist.
    Missing,
    /// It could not be asked (the registry's error).
    Unknown(String),
}

/// The entries of `current` that `base` lacks (all of them without a base).
pub fn added_since<'a>(base: Option<&ImagesList>, current: &'a ImagesList) -> Vec<&'a Entry> {
    current
        .entries()
        .filter(|e| base.is_none_or(|b| !b.contains(e)))
        .collect()
}

/// The entries of `base` that `current` no longer has: mirrored tags are never dropped from
/// images-list (a removed line is a mistake, or a decision the check makes visible).
pub fn removed_since<'a>(base: Option<&'a ImagesList>, current: &ImagesList) -> Vec<&'a Entry> {
    base.map(|b| b.entries().filter(|e| !current.contains(e)).collect())
        .unwrap_or_default()
}

/// A target tag listed from two sources: two lines that would write the same tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict<'a> {
    /// The line listed first.
    pub first: &'a Entry,
    /// The other line (one of those added).
    pub second: &'a Entry,
}

/// Target tags that an added entry shares with another entry of another source. Conflicts
/// among lines that were all there before are not this change's doing and are left out.
pub fn conflicts<'a>(current: &'a ImagesList, added: &[&'a Entry]) -> Vec<Conflict<'a>> {
    let mut first: std::collections::HashMap<(&Repository, &str), &Entry> =
        std::collections::HashMap::new();
    let mut found = Vec::new();
    for entry in current.entries() {
        let key = (&entry.target, entry.tag.as_str());
        match first.get(&key) {
            Some(earlier) if earlier.source != entry.source => {
                if added.contains(&entry) || added.contains(earlier) {
                    found.push(Conflict {
                        first: earlier,
                        second: entry,
                    });
                }
            }
            Some(_) => {}
            None => {
                first.insert(key, entry);
            }
        }
    }
    found
}

/// Whether each entry's source tag exists, asked with a HEAD (no pull), a few at a time.
pub async fn source_tags(registry: &RegistryClient, entries: &[&Entry]) -> Vec<SourceTag> {
    stream::iter(entries.iter())
        .map(|e| async move {
            match registry.manifest_digest(&e.source, e.tag.as_str()).await {
                Ok(Some(digest)) => SourceTag::Exists(digest),
                Ok(None) => SourceTag::Missing,
                Err(e) => SourceTag::Unknown(e.to_string()),
            }
        })
        .buffered(8)
        .collect()
        .await
}

/// What a target repository is ready for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRepo {
    /// It exists, or the registry creates it on the first push.
    Ready,
    /// It cannot take the image: what to do about it.
    Missing(String),
    /// It could not be asked (why).
    Unknown(String),
}

/// Asks whether target repositories can take images: Docker Hub through its repositories
/// API (new Docker Hub repositories must be created first), other registries through the
/// registry protocol. The repositories asked are those pushed to: the target overrides of
/// the command line (`--dest-registry`, `--dest-org`) applied.
pub struct TargetRepos<'a> {
    /// Registries.
    pub registry: &'a RegistryClient,
    /// Docker Hub's web API.
    pub hub: &'a DockerHub,
    /// Where targets go instead of where images-list says.
    pub overrides: &'a TargetOverrides,
}

impl TargetRepos<'_> {
    /// Whether the listed target `repo` can take an image: every repository it is pushed to
    /// under the overrides.
    pub async fn check(&self, repo: &Repository) -> TargetRepo {
        let pushed = match self.overrides.apply(repo) {
            Ok(pushed) => pushed,
            Err(e) => return TargetRepo::Missing(format!("{repo}: target override: {e}")),
        };
        for target in &pushed {
            let found = self.check_pushed(target).await;
            if found != TargetRepo::Ready {
                return found;
            }
        }
        TargetRepo::Ready
    }

    /// Whether `repo`, a repository pushed to, can take an image.
    async fn check_pushed(&self, repo: &Repository) -> TargetRepo {
        if repo.is_docker_hub() {
            return match self.hub.repository_exists(repo).await {
                Ok(true) => TargetRepo::Ready,
                Ok(false) => TargetRepo::Missing(format!(
                    "the Docker Hub repository does not exist: create {repo} first"
                )),
                Err(e) => TargetRepo::Unknown(e.to_string()),
            };
        }
        match self.registry.repository_status(repo).await {
            Ok(RepositoryStatus::Exists | RepositoryStatus::Creatable) => TargetRepo::Ready,
            Ok(RepositoryStatus::Refused(why)) => TargetRepo::Missing(format!(
                "{repo} does not exist or refuses pushes ({why}): create it, or grant push, first"
            )),
            Err(e) => TargetRepo::Unknown(e.to_string()),
        }
    }

    /// The problems of the target repositories of `entries` that `list` does not name yet
    /// (each asked once), as lines for people.
    pub async fn problems_of_new(&self, list: &ImagesList, entries: &[&Entry]) -> Vec<String> {
        let known: std::collections::HashSet<&Repository> =
            list.entries().map(|e| &e.target).collect();
        let mut new: Vec<&Repository> = Vec::new();
        for e in entries {
            if !known.contains(&e.target) && !new.contains(&&e.target) {
                new.push(&e.target);
            }
        }
        let mut problems = Vec::new();
        for repo in new {
            match self.check(repo).await {
                TargetRepo::Ready => {}
                TargetRepo::Missing(why) => problems.push(why),
                TargetRepo::Unknown(why) => {
                    problems.push(format!("{repo}: could not be checked: {why}"))
                }
            }
        }
        problems
    }
}
