//! Tag discovery: for one config.json rule, the tags its source offers, those its filters
//! keep, and which of them images-list does not have yet, each with its target.

use image_mirror_common::config::GithubRepo;
use image_mirror_common::reference::ReferenceError;
use image_mirror_common::{
    Entry, ImageRef, ImagesList, MirrorJob, Repository, Requester, Rule, Tag, VersionSource,
};
use image_mirror_github::{GithubClient, GithubError, Release};
use image_mirror_registry::dockerhub::DockerHub;
use image_mirror_registry::{RegistryClient, RegistryError};

use crate::check::{TargetRepo, TargetRepos};
use crate::helm::{Helm, HelmError};
use crate::jobs::TargetOverrides;
use crate::targets::{target_for, NewImages};
use crate::versions::{is_semver_tag, Selection};

/// What the tag sources are read through.
#[derive(Clone)]
pub struct Sources {
    /// GitHub, for the `github-*` kinds.
    pub github: GithubClient,
    /// Registries, for the `registry` kind (and to check new target repositories).
    pub registry: RegistryClient,
    /// Docker Hub's web API, to check new Docker Hub target repositories.
    pub hub: DockerHub,
    /// Where images a `github-tagged-images-file` rule names, and images-list does not have,
    /// go (`None`: they are reported, not proposed).
    pub new_images: Option<NewImages>,
    /// Where targets go instead of where images-list says (new target repositories are
    /// checked where they are pushed to).
    pub overrides: TargetOverrides,
    /// The helm program, for the `helm-latest` kind.
    pub helm: Helm,
}

/// What discovery found for one rule.
#[derive(Debug, Clone, Default)]
pub struct KeyReport {
    /// The rule's key in config.json.
    pub key: String,
    /// The `versionSource` value.
    pub source: String,
    /// The images the tags apply to (for the images-file kind: the images the files named).
    pub images: Vec<Repository>,
    /// The tags the source offered that the filters kept (for the images-file kind, as
    /// `image:tag`).
    pub found: Vec<String>,
    /// The tags images-list lacks, as the lines that would record them.
    pub new: Vec<Entry>,
    /// What went wrong: reading the source, or an image without a single target.
    pub errors: Vec<String>,
    /// The kind, when this version does not run it.
    pub unsupported: Option<String>,
}

impl KeyReport {
    /// One job per new tag, with the target overrides applied and `record: true`.
    pub fn jobs(&self, overrides: &TargetOverrides) -> Result<Vec<MirrorJob>, ReferenceError> {
        overrides.jobs_for(&self.new, true, &Requester::Discover(self.key.clone()))
    }
}

/// The jobs of every report, in their order.
pub fn jobs_of(
    reports: &[KeyReport],
    overrides: &TargetOverrides,
) -> Result<Vec<MirrorJob>, ReferenceError> {
    let mut jobs = Vec::new();
    for report in reports {
        jobs.extend(report.jobs(overrides)?);
    }
    Ok(jobs)
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Helm(#[from] HelmError),
}

/// Runs `rule` against its source and `list`. Failures end up in the report, never as a
/// panic or an early return, so that one key cannot stop the others.
pub async fn discover(rule: &Rule, list: &ImagesList, sources: &Sources) -> KeyReport {
    let mut report = KeyReport {
        key: rule.key.clone(),
        source: source_spec(&rule.source),
        images: rule.images.clone(),
        ..KeyReport::default()
    };
    if let VersionSource::Unsupported { kind, .. } = &rule.source {
        report.unsupported = Some(kind.clone());
        return report;
    }
    match found_tags(rule, sources, &mut report).await {
        Ok(pairs) => {
            note_found(rule, &pairs, &mut report);
            let derive = match rule.source {
                VersionSource::GithubTaggedImagesFile(_) | VersionSource::HelmLatest(_) => {
                    sources.new_images.as_ref()
                }
                _ => None,
            };
            note_new(list, pairs, derive, &mut report);
            check_new_targets(list, sources, &mut report).await;
        }
        Err(e) => report.errors.push(e.to_string()),
    }
    report
}

/// New images are proposed only when their target repository can take them; the others are
/// reported, saying what to do.
async fn check_new_targets(list: &ImagesList, sources: &Sources, report: &mut KeyReport) {
    let repos = TargetRepos {
        registry: &sources.registry,
        hub: &sources.hub,
        overrides: &sources.overrides,
    };
    let known: std::collections::HashSet<&Repository> = list.entries().map(|e| &e.target).collect();
    let mut refused = Vec::new();
    for entry in report.new.iter().filter(|e| !known.contains(&e.target)) {
        if refused.contains(&entry.target) {
            continue;
        }
        match repos.check(&entry.target).await {
            TargetRepo::Ready => {}
            TargetRepo::Missing(why) | TargetRepo::Unknown(why) => {
                report
                    .errors
                    .push(format!("{}: {why}", entry.source.short()));
                refused.push(entry.target.clone());
            }
        }
    }
    report.new.retain(|e| !refused.contains(&e.target));
}

/// The (image, tag) pairs `rule`'s source finds, after its filters.
async fn found_tags(
    rule: &Rule,
    sources: &Sources,
    report: &mut KeyReport,
) -> Result<Vec<(Repository, String)>, SourceError> {
    let selection = Selection {
        filter: rule.filter.as_ref(),
        constraint: rule.constraint.as_ref(),
        latest: rule.latest,
    };
    match &rule.source {
        VersionSource::Unsupported { .. } | VersionSource::None => Ok(Vec::new()),
        VersionSource::GithubReleases(repo) => {
            let releases = sources.github.releases(repo).await?;
            let tags = selection.apply(&published_semver(releases));
            Ok(for_each_image(&rule.images, &tags))
        }
        VersionSource::GithubLatestRelease(repo) => {
            let release = sources.github.latest_release(repo).await?;
            let tags = selection.apply(&[release.tag_name]);
            Ok(for_each_image(&rule.images, &tags))
        }
        VersionSource::Registry => match rule.images.first() {
            Some(first) => {
                let tags = sources.registry.list_tags(first).await?;
                Ok(for_each_image(&rule.images, &selection.apply(&tags)))
            }
            None => Ok(Vec::new()),
        },
        VersionSource::GithubTaggedImagesFile(repo) => {
            images_files(rule, repo, &selection, sources, report).await
        }
        VersionSource::HelmLatest(url) => helm_images(rule, url, sources).await,
    }
}

/// `helm-latest`: the images the charts render, less the denylist.
async fn helm_images(
    rule: &Rule,
    url: &str,
    sources: &Sources,
) -> Result<Vec<(Repository, String)>, SourceError> {
    let (rendered, odd) = sources.helm.images(url, &rule.helm_charts).await?;
    for o in odd {
        tracing::debug!(key = %rule.key, "{o}");
    }
    Ok(rendered
        .into_iter()
        .filter(|r| !rule.image_denylist.contains(r.image.repository()))
        .filter_map(|r| {
            let tag = r.image.tag()?.as_str().to_owned();
            Some((r.image.repository().clone(), tag))
        })
        .collect())
}

/// What the report says was found: tags, or for an images file the full references (and the
/// images the file named).
fn note_found(rule: &Rule, pairs: &[(Repository, String)], report: &mut KeyReport) {
    if matches!(
        rule.source,
        VersionSource::GithubTaggedImagesFile(_) | VersionSource::HelmLatest(_)
    ) {
        report.found = pairs
            .iter()
            .map(|(i, t)| format!("{}:{t}", i.short()))
            .collect();
        for (image, _) in pairs {
            if !report.images.contains(image) {
                report.images.push(image.clone());
            }
        }
    } else {
        let mut found: Vec<String> = Vec::new();
        for (_, t) in pairs {
            if !found.contains(t) {
                found.push(t.clone());
            }
        }
        report.found = found;
    }
}

/// The found tags images-list does not have yet, each with its target: the one images-list
/// maps the image to, or (with `derive`) the derived target of a new image.
fn note_new(
    list: &ImagesList,
    pairs: Vec<(Repository, String)>,
    derive: Option<&NewImages>,
    report: &mut KeyReport,
) {
    for (image, tag) in pairs {
        let Ok(tag) = tag.parse::<Tag>() else {
            report
                .errors
                .push(format!("{}: {tag:?} is not a valid tag", image.short()));
            continue;
        };
        if list.has_source_tag(&image, &tag) {
            continue;
        }
        let target = match derive {
            Some(rule) => rule.target_of(list, &image).map(|(t, _)| t),
            None => target_for(list, &image),
        };
        match target {
            Ok(target) => report.new.push(Entry {
                source: image,
                target,
                tag,
            }),
            Err(e) => {
                let e = e.to_string();
                if !report.errors.contains(&e) {
                    report.errors.push(e);
                }
            }
        }
    }
}

/// Tags of releases that are published, not pre-releases, and semver once a `v` is dropped.
fn published_semver(releases: Vec<Release>) -> Vec<String> {
    releases
        .into_iter()
        .filter(|r| !r.draft && !r.prerelease && is_semver_tag(&r.tag_name))
        .map(|r| r.tag_name)
        .collect()
}

fn for_each_image(images: &[Repository], tags: &[String]) -> Vec<(Repository, String)> {
    images
        .iter()
        .flat_map(|i| tags.iter().map(move |t| (i.clone(), t.clone())))
        .collect()
}

/// `github-tagged-images-file`: the selected release tags, and at each the images the file
/// lists. A line that is not an `image:tag` reference is reported, the others still count.
async fn images_files(
    rule: &Rule,
    repo: &GithubRepo,
    selection: &Selection<'_>,
    sources: &Sources,
    report: &mut KeyReport,
) -> Result<Vec<(Repository, String)>, SourceError> {
    let path = rule.images_file_path.as_deref().unwrap_or_default();
    let releases = sources.github.releases(repo).await?;
    let mut pairs = Vec::new();
    for release_tag in selection.apply(&published_semver(releases)) {
        let text = sources.github.file_at(repo, path, &release_tag).await?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line.parse::<ImageRef>();
            match parsed {
                Ok(r) if r.tag().is_some() => {
                    let image = r.repository().clone();
                    if rule.image_denylist.contains(&image) {
                        continue;
                    }
                    let tag = r.tag().map(|t| t.as_str().to_owned()).unwrap_or_default();
                    if !pairs.contains(&(image.clone(), tag.clone())) {
                        pairs.push((image, tag));
                    }
                }
                _ => report.errors.push(format!(
                    "{repo}@{release_tag}:{path}:{}: {line:?} is not an image:tag reference",
                    n + 1
                )),
            }
        }
    }
    Ok(pairs)
}

fn source_spec(source: &VersionSource) -> String {
    match source {
        VersionSource::GithubReleases(r) => format!("github-releases:{r}"),
        VersionSource::GithubLatestRelease(r) => format!("github-latest-release:{r}"),
        VersionSource::GithubTaggedImagesFile(r) => format!("github-tagged-images-file:{r}"),
        VersionSource::HelmLatest(url) => format!("helm-latest:{url}"),
        VersionSource::Registry => "registry".to_owned(),
        VersionSource::None => "none".to_owned(),
        VersionSource::Unsupported { spec, .. } => spec.clone(),
    }
}
