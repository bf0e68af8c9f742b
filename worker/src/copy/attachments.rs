//! What travels with an image when asked: its OCI 1.1 **referrers** (signatures,
//! attestations, SBOMs whose `subject` is the image, and theirs in turn) and cosign's legacy
//! **digest tags** (`sha256-<hex>.sig`, `.att`, `.sbom`).
//!
//! After an image is copied (or found already there), its referrers are listed at the source
//! (referrers API, else fallback tag), filtered by artifact type, and each copied by digest,
//! byte for byte; then their own referrers, to [`MAX_DEPTH`] levels and [`MAX_REFERRERS`] in
//! all. A target that answers the referrers API lists them by itself; one that does not gets
//! the fallback tag's index read, merged (each digest once) and written back, under a lock per
//! (repository, tag) in this process and the fleet's lease of that tag across workers, then
//! read again to check that nothing was lost. Nothing here runs unless asked: without the
//! options, no referrers request and no tag list.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use image_mirror_common::{Digest, ImageRef, Repository};
use image_mirror_registry::referrers::{
    descriptor_of, fallback_tag, merged_index, Referrer, Referrers, OCI_INDEX,
};
use image_mirror_registry::Manifest;

use futures_util::future::BoxFuture;
use image_mirror_registry::RegistryClient;

use crate::copy::copying::TargetOutcome;
use crate::copy::error::CopyError;
use crate::copy::fleet::Fleet;
use crate::copy::report::Attached;
use image_mirror_trust::TrustPolicy;

/// Levels of referrers followed (a signature of an SBOM of an image is level 2).
pub const MAX_DEPTH: usize = 4;
/// Referrers copied for one image at most.
pub const MAX_REFERRERS: usize = 1000;
/// cosign's legacy tag suffixes.
pub const DIGEST_TAG_SUFFIXES: [&str; 3] = [".sig", ".att", ".sbom"];
/// Writes of a fallback index before giving up on a registry that keeps losing them.
const FALLBACK_WRITES: usize = 3;

/// What travels with each image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Copy the image's referrers.
    pub referrers: bool,
    /// Only referrers of these artifact types (all when empty).
    pub artifact_types: Vec<String>,
    /// Copy cosign's `sha256-<hex>.sig/.att/.sbom` tags of the image.
    pub digest_tags: bool,
}

impl AttachOptions {
    /// Whether anything travels with an image.
    pub fn any(&self) -> bool {
        self.referrers || self.digest_tags
    }

    /// These options and `more`'s: each thing asked by either; the artifact type filter is
    /// these options' (the operator's `--referrers-type`), else `more`'s.
    #[must_use]
    pub fn with(&self, more: &Self) -> Self {
        Self {
            referrers: self.referrers || more.referrers,
            artifact_types: if self.artifact_types.is_empty() {
                more.artifact_types.clone()
            } else {
                self.artifact_types.clone()
            },
            digest_tags: self.digest_tags || more.digest_tags,
        }
    }

    fn wanted(&self, r: &Referrer) -> bool {
        self.artifact_types.is_empty()
            || r.artifact_type
                .as_ref()
                .is_some_and(|t| self.artifact_types.contains(t))
    }
}

/// The options, who a signature must come from, and the locks of fallback tags
/// written by this process.
#[derive(Debug, Default)]
pub(crate) struct Attach {
    pub(crate) options: AttachOptions,
    pub(crate) trust: TrustPolicy,
    locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Attach {
    pub(crate) fn new(options: AttachOptions, trust: TrustPolicy) -> Self {
        Self {
            options,
            trust,
            locks: tokio::sync::Mutex::default(),
        }
    }

    async fn lock_of(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().await;
        Arc::clone(locks.entry(key).or_default())
    }
}

/// What copies the images that travel with an image: the engine, which this module does not
/// know (it orchestrates images, this is one of its steps).
pub(crate) trait ImageCopier: Sync {
    /// Copies `source` to `target`, overwriting a target tag that holds another digest when
    /// `overwrite` (cosign's digest tags follow their source).
    fn copy_images<'a>(
        &'a self,
        source: &'a ImageRef,
        target: &'a ImageRef,
        overwrite: bool,
    ) -> BoxFuture<'a, Vec<TargetOutcome>>;
}

/// What copying what travels with an image reads.
pub(crate) struct Along<'a> {
    pub(crate) client: &'a RegistryClient,
    /// The fleet, whose lease of a fallback tag serialises its writers across workers.
    pub(crate) fleet: Option<&'a Fleet>,
    pub(crate) copier: &'a dyn ImageCopier,
    pub(crate) options: &'a AttachOptions,
}

fn by_digest(repo: &Repository, digest: &Digest) -> Result<ImageRef, CopyError> {
    format!("{repo}@{digest}")
        .parse()
        .map_err(|e| CopyError::Invalid(format!("{e}")))
}

fn by_tag(repo: &Repository, tag: &str) -> Result<ImageRef, CopyError> {
    format!("{repo}:{tag}")
        .parse()
        .map_err(|e| CopyError::Invalid(format!("{e}")))
}

impl Attach {
    /// Copies what travels with `digest` from `source` to `target`, as `along`'s options say.
    pub(crate) async fn copy_along(
        &self,
        along: &Along<'_>,
        source: &Repository,
        target: &Repository,
        digest: &Digest,
    ) -> Result<Attached, CopyError> {
        let mut attached = Attached::default();
        if along.options.referrers {
            attached.referrers = self.copy_referrers(along, source, target, digest).await?;
        }
        if along.options.digest_tags {
            attached.digest_tags = copy_digest_tags(along, source, target, digest).await?;
        }
        Ok(attached)
    }

    /// The referrers of `digest`, level by level: each copied, each subject's list at the
    /// target made to hold them.
    async fn copy_referrers(
        &self,
        along: &Along<'_>,
        source: &Repository,
        target: &Repository,
        digest: &Digest,
    ) -> Result<u64, CopyError> {
        let (client, options) = (along.client, along.options);
        let mut level = vec![digest.clone()];
        let mut seen: HashSet<Digest> = HashSet::from([digest.clone()]);
        let mut copied = 0_u64;
        for _ in 0..MAX_DEPTH {
            let mut next = Vec::new();
            for subject in &level {
                let listed = client.referrers(source, subject).await?;
                let wanted: Vec<&Referrer> = listed
                    .list()
                    .iter()
                    .filter(|r| options.wanted(r) && seen.insert(r.digest.clone()))
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                if seen.len() > MAX_REFERRERS {
                    return Err(CopyError::Invalid(format!(
                        "{source}@{digest} has more than {MAX_REFERRERS} referrers"
                    )));
                }
                let mut written = Vec::new();
                for r in wanted {
                    let src = by_digest(source, &r.digest)?;
                    let dst = by_digest(target, &r.digest)?;
                    only(along.copier.copy_images(&src, &dst, false).await)?;
                    let manifest = client.get_manifest(target, &r.digest.to_string()).await?;
                    written.push(descriptor_of(&manifest).map_err(CopyError::Invalid)?);
                    next.push(r.digest.clone());
                    copied += 1;
                }
                self.list_at_target(along, target, subject, &written)
                    .await?;
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        Ok(copied)
    }

    /// Makes the target list `written` as referrers of `subject`: nothing to do where it
    /// answers the referrers API, else its fallback tag's index gets them.
    pub(crate) async fn list_at_target(
        &self,
        along: &Along<'_>,
        target: &Repository,
        subject: &Digest,
        written: &[Referrer],
    ) -> Result<(), CopyError> {
        let Referrers::FallbackTag(listed) = along.client.referrers(target, subject).await? else {
            return Ok(());
        };
        let listed: HashSet<&Digest> = listed.iter().map(|r| &r.digest).collect();
        if written.iter().all(|r| listed.contains(&r.digest)) {
            return Ok(());
        }
        let tag = fallback_tag(subject);
        let merge = Box::pin(merge_fallback(along.client, target, subject, &tag, written));
        self.as_only_writer(
            along.fleet,
            target.registry(),
            &format!("{target}:{tag}"),
            merge,
        )
        .await
    }

    /// Runs `work` as the only writer of the tag `key` of `registry`: under a lock in the
    /// process and, in a fleet, the fleet's lease of the tag.
    pub(crate) async fn as_only_writer<T>(
        &self,
        fleet: Option<&Fleet>,
        registry: &str,
        key: &str,
        // Boxed by the caller: the copy's future is deep already, and this one holds another.
        work: std::pin::Pin<Box<impl std::future::Future<Output = T>>>,
    ) -> T {
        let lock = self.lock_of(key.to_owned()).await;
        let _held = lock.lock().await;
        let lease = match fleet {
            Some(fleet) => fleet.lease_tag(registry, key).await,
            None => None,
        };
        let result = work.await;
        if let Some(lease) = lease {
            let _ = lease.landed().await;
        }
        result
    }
}

/// Read, add, write, read again: the fallback index of `subject` holds `written`.
async fn merge_fallback(
    client: &RegistryClient,
    target: &Repository,
    subject: &Digest,
    tag: &str,
    written: &[Referrer],
) -> Result<(), CopyError> {
    for _ in 0..FALLBACK_WRITES {
        let index = client.fallback_index(target, subject).await?;
        let Some(bytes) = merged_index(index.as_ref(), written).map_err(CopyError::Invalid)? else {
            return Ok(());
        };
        let manifest = Manifest {
            digest: Digest::sha256_of(&bytes),
            bytes,
            media_type: OCI_INDEX.to_owned(),
        };
        client.put_manifest(target, tag, &manifest).await?;
    }
    Err(CopyError::Invalid(format!(
        "{target}:{tag}: the referrers fallback index lost entries {FALLBACK_WRITES} times \
             in a row (another writer without a lease?)"
    )))
}

/// cosign's legacy tags of `digest` at the source, copied under the same tags (their
/// content follows the source's: a new signature replaces the tag).
async fn copy_digest_tags(
    along: &Along<'_>,
    source: &Repository,
    target: &Repository,
    digest: &Digest,
) -> Result<u64, CopyError> {
    let tags: HashSet<String> = along.client.list_tags(source).await?.into_iter().collect();
    let base = fallback_tag(digest);
    let mut copied = 0;
    for suffix in DIGEST_TAG_SUFFIXES {
        let tag = format!("{base}{suffix}");
        if !tags.contains(&tag) {
            continue;
        }
        let (src, dst) = (by_tag(source, &tag)?, by_tag(target, &tag)?);
        only(along.copier.copy_images(&src, &dst, true).await)?;
        copied += 1;
    }
    Ok(copied)
}

/// The result of a copy to one target.
fn only(mut outcomes: Vec<TargetOutcome>) -> Result<crate::copy::report::CopyReport, CopyError> {
    outcomes
        .pop()
        .map_or_else(|| Err(CopyError::Invalid("no target".into())), |t| t.result)
}
