//! `add-tag` and `add-image`: the checks a manual request passes before anything is mirrored
//! or recorded.
//! Every image must be in images-list with a single target (or one `mirrored-` target among
//! several), every tag must be new for it (exact match: `v1.2` is not `v1.2.3`), and every
//! tag must exist at the source.

use image_mirror_common::{Entry, ImageRef, ImagesList, Repository, Tag};
use image_mirror_registry::RegistryClient;

use crate::check::{source_tags, SourceTag, TargetRepos};
use crate::targets::{target_for, NewImages};

/// The lines `images` x `tags` would add to `list`, or every reason they cannot be added.
pub async fn plan_add_tag(
    list: &ImagesList,
    images: &[Repository],
    tags: &[Tag],
    registry: &RegistryClient,
) -> Result<Vec<Entry>, Vec<String>> {
    let mut problems = Vec::new();
    let mut candidates = Vec::new();
    for image in images {
        let target = match target_for(list, image) {
            Ok(t) => t,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        for tag in tags {
            if list.has_source_tag(image, tag) {
                problems.push(format!("{}:{tag} is already in images-list", image.short()));
                continue;
            }
            candidates.push(Entry {
                source: image.clone(),
                target: target.clone(),
                tag: tag.clone(),
            });
        }
    }
    let refs: Vec<&Entry> = candidates.iter().collect();
    for (entry, found) in refs.iter().zip(source_tags(registry, &refs).await) {
        let what = format!("{}:{}", entry.source.short(), entry.tag);
        match found {
            SourceTag::Exists(_) => {}
            SourceTag::Missing => problems.push(format!("{what} does not exist at the source")),
            SourceTag::Unknown(e) => problems.push(format!("{what} could not be checked: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(candidates)
    } else {
        Err(problems)
    }
}

/// The lines the full references `images` (`SOURCE:TAG`) would add to `list` as new images
/// (or new tags of listed ones, which keep their mapping): each target derived by `rule`,
/// every tag checked at the source, every target repository new to images-list checked at its
/// registry. Every reason they cannot be added, otherwise.
pub async fn plan_add_image(
    list: &ImagesList,
    images: &[ImageRef],
    rule: &NewImages,
    repos: &TargetRepos<'_>,
) -> Result<Vec<Entry>, Vec<String>> {
    let mut problems = Vec::new();
    let mut candidates: Vec<Entry> = Vec::new();
    for image in images {
        let Some(tag) = image.tag() else {
            problems.push(format!("{}: name a tag (SOURCE:TAG)", image.short()));
            continue;
        };
        let source = image.repository();
        let target = match rule.target_of(list, source) {
            Ok((t, _)) => t,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if list.has_source_tag(source, tag) {
            problems.push(format!(
                "{}:{tag} is already in images-list",
                source.short()
            ));
            continue;
        }
        let entry = Entry {
            source: source.clone(),
            target,
            tag: tag.clone(),
        };
        if !candidates.contains(&entry) {
            candidates.push(entry);
        }
    }
    let refs: Vec<&Entry> = candidates.iter().collect();
    for (entry, found) in refs.iter().zip(source_tags(repos.registry, &refs).await) {
        let what = format!("{}:{}", entry.source.short(), entry.tag);
        match found {
            SourceTag::Exists(_) => {}
            SourceTag::Missing => problems.push(format!("{what} does not exist at the source")),
            SourceTag::Unknown(e) => problems.push(format!("{what} could not be checked: {e}")),
        }
    }
    problems.extend(repos.problems_of_new(list, &refs).await);
    if problems.is_empty() {
        Ok(candidates)
    } else {
        Err(problems)
    }
}
