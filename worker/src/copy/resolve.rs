//! The first step of a copy: what is there to do? Both ends are asked with HEADs (free where a
//! registry counts manifest GETs as pulls), and the source is read only for what the target
//! lacks:
//!
//! - the target tag has the source digest: nothing at all is read;
//! - the target holds that digest under another tag (a new tag of an image it has): the
//!   manifest is read from the target and only the tag is pushed;
//! - else the top manifest is read from the source, by digest, and the tree is copied.

use image_mirror_common::registry::{Manifest, ManifestHead, ManifestKind, RegistryError};
use image_mirror_common::{Digest, ImageRef};

use crate::copy::error::CopyError;
use crate::copy::CopyEngine;

/// What a copy has to do.
pub(crate) enum Plan {
    /// The target tag already holds the source digest.
    UpToDate {
        digest: Digest,
        media_type: Option<String>,
    },
    /// The target holds the manifest by digest; only the tag is missing.
    Retag { manifest: Manifest },
    /// The tree is to be copied from the source.
    Copy {
        top: Manifest,
        /// The target repository did not exist (its tag list answered 404).
        target_is_new: bool,
    },
}

/// A plan and the reference the target is written under (its tag, or the digest).
pub(crate) struct Resolution {
    pub(crate) plan: Plan,
    pub(crate) reference: String,
}

impl CopyEngine {
    /// Asks both ends and decides what `source -> target` needs.
    pub(crate) async fn resolve(
        &self,
        source: &ImageRef,
        target: &ImageRef,
    ) -> Result<Resolution, CopyError> {
        let client = &self.client;
        let (src_repo, dst_repo) = (source.repository(), target.repository());
        let named = target.tag().or(source.tag()).map(ToString::to_string);
        let source_reference = source.reference();
        let (src, dst) = tokio::join!(client.head_manifest(src_repo, &source_reference), async {
            match &named {
                Some(tag) => client.manifest_digest(dst_repo, tag).await,
                None => Ok(None),
            }
        });
        let (src_digest, media_type, read) = match src? {
            ManifestHead::Missing => {
                return Err(RegistryError::NotFound {
                    registry: src_repo.registry().to_owned(),
                    operation: format!("HEAD manifest {}:{source_reference}", src_repo.path()),
                }
                .into())
            }
            ManifestHead::Found { digest, media_type } => (digest, media_type, None),
            ManifestHead::Read(m) => (m.digest.clone(), Some(m.media_type.clone()), Some(m)),
        };
        if let Some(d) = target.digest() {
            if *d != src_digest {
                return Err(CopyError::Invalid(format!(
                    "target {target} names digest {d}, but the source is {src_digest}"
                )));
            }
        }
        let reference = named.unwrap_or_else(|| src_digest.to_string());
        let dst = dst?;
        if dst.as_ref() == Some(&src_digest) {
            return Ok(Resolution {
                plan: Plan::UpToDate {
                    digest: src_digest,
                    media_type,
                },
                reference,
            });
        }
        // A new tag of an image the target already has, or a target named by digest.
        let held = client
            .manifest_digest(dst_repo, src_digest.as_str())
            .await?;
        if held.as_ref() == Some(&src_digest) {
            let plan = if reference == src_digest.as_str() {
                Plan::UpToDate {
                    digest: src_digest,
                    media_type,
                }
            } else {
                Plan::Retag {
                    manifest: client.get_manifest(dst_repo, src_digest.as_str()).await?,
                }
            };
            return Ok(Resolution { plan, reference });
        }
        let (top, target_is_new) = tokio::join!(
            async {
                match read {
                    Some(m) => Ok(m),
                    None => client.get_manifest(src_repo, src_digest.as_str()).await,
                }
            },
            async { dst.is_none() && client.repository_is_new(dst_repo).await }
        );
        Ok(Resolution {
            plan: Plan::Copy {
                top: top?,
                target_is_new,
            },
            reference,
        })
    }
}

/// The platforms an index lists, each once; none for an image manifest.
pub(crate) fn platforms_of(manifest: &Manifest) -> Result<Vec<String>, CopyError> {
    if manifest.kind() != ManifestKind::Index {
        return Ok(Vec::new());
    }
    let mut seen = std::collections::HashSet::new();
    Ok(manifest
        .children()
        .map_err(CopyError::Invalid)?
        .into_iter()
        .filter_map(|c| c.platform)
        .filter(|p| seen.insert(p.clone()))
        .collect())
}
