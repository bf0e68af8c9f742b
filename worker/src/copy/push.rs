//! Pushing manifests, children first: each image manifest as soon as [`BlobStates`] allows, then
//! the nested indexes in order, then the top level by its tag.
//!
//! A registry can lose track of a blob a manifest lists while another client writes the same
//! blob's link (two uploads or mounts of it into one repository at once): the push then gets
//! `MANIFEST_BLOB_UNKNOWN` or `DIGEST_INVALID` although every blob was stored. That is a race,
//! not a bad manifest: what the manifest lists is asked for again, anything missing is sent
//! again, and the push is tried again, a bounded number of times.

use futures_util::future::BoxFuture;
use image_mirror_common::{Digest, Repository};
use image_mirror_registry::{Manifest, ManifestKind, RegistryError};
use tracing::Instrument;

use crate::copy::activity::Watched;
use crate::copy::blob::blob_copy::BlobCopy;
use crate::copy::blob::flight::bring;
use crate::copy::blob_states::BlobStates;
use crate::copy::error::CopyError;
use crate::copy::parts::Parts;
use crate::copy::platforms::{Choice, OnSparseRefused};
use crate::copy::report::Counters;
use crate::copy::walk::Tree;

/// Pushes tried again after a registry race.
pub const RACE_RETRIES: usize = 3;

/// What a manifest push needs to repair a race: the tree and the copy's state.
pub(crate) struct Pushing<'a> {
    pub(crate) parts: &'a Parts,
    pub(crate) source: &'a Repository,
    pub(crate) target: &'a Repository,
    pub(crate) tree: &'a Tree,
    pub(crate) blob_states: &'a BlobStates,
    pub(crate) counters: &'a Counters,
    /// The entries of the top index the chosen platforms keep, when not all.
    pub(crate) choice: Option<&'a Choice>,
}

impl Pushing<'_> {
    /// Pushes the image manifests below the top level by digest, all at once (a PUT of a
    /// manifest the target has costs no more than asking whether it has it), each as soon as
    /// [`BlobStates`] allows: its blobs in the target, every blob of the image checked.
    pub(crate) async fn push_children(&self) -> Result<(), CopyError> {
        let p = self;
        let Some((_top, children)) = p.tree.manifests.split_last() else {
            return Ok(());
        };
        let pushes = children
            .iter()
            .filter(|m| m.kind() == ManifestKind::Image)
            .map(|child| -> BoxFuture<'_, Result<(), CopyError>> {
                Box::pin(async move {
                    let blobs: Vec<_> = p
                        .tree
                        .blobs
                        .get(&child.digest)
                        .map(|b| b.iter().map(|d| d.digest.clone()).collect())
                        .unwrap_or_default();
                    p.blob_states.ready_for(&blobs).await;
                    self.push_manifest(child.digest.as_str(), child).await
                })
            });
        // Waiting costs nothing; the per-host request limit bounds the PUTs themselves.
        futures_util::future::try_join_all(pushes).await?;
        Ok(())
    }

    /// After the image manifests: the nested indexes in order (each after its own children),
    /// then the top level under `reference`: what landed there, the top manifest or the index
    /// cut from it for the chosen platforms.
    pub(crate) async fn push_indexes_and_top(&self, reference: &str) -> Result<Landed, CopyError> {
        let p = self;
        let Some((top, children)) = p.tree.manifests.split_last() else {
            return Err(CopyError::Invalid("the source tree is empty".into()));
        };
        let indexes: Vec<&Manifest> = children
            .iter()
            .filter(|m| m.kind() == ManifestKind::Index)
            .collect();
        for index in indexes {
            self.push_manifest(index.digest.as_str(), index).await?;
        }
        match self.choice.filter(|c| !c.whole) {
            Some(choice) => self.push_chosen(reference, top, choice).await,
            None => {
                self.push_manifest(reference, top).await?;
                Ok(Landed {
                    digest: top.digest.clone(),
                    rewritten: false,
                })
            }
        }
    }

    /// The top index with only the chosen platforms present: its own bytes (a sparse index:
    /// the digest kept) unless the registry refuses that, or is known to; then, unless told
    /// to fail, the index cut for the choice. A refusal is remembered for the registry (and
    /// told to the fleet), so that it is paid once.
    async fn push_chosen(
        &self,
        reference: &str,
        top: &Manifest,
        choice: &Choice,
    ) -> Result<Landed, CopyError> {
        let registry = self.target.registry();
        let limits = self.parts.client.upload_limits();
        let mut said = "known to refuse them".to_owned();
        if !limits.refuses_sparse_index(registry) {
            let span = tracing::info_span!("copy.manifest", digest = %top.digest, reference, sparse = true);
            let pushed = self
                .parts
                .client
                .put_manifest(self.target, reference, top)
                .instrument(span)
                .await;
            match pushed {
                Ok(()) => {
                    Counters::add(&self.counters.manifests_pushed, 1);
                    return Ok(Landed {
                        digest: top.digest.clone(),
                        rewritten: false,
                    });
                }
                Err(e) if refuses_sparse(&e) => {
                    limits.sparse_index_refused(registry);
                    said = e.to_string();
                }
                Err(e) => return Err(e.into()),
            }
        }
        if self.parts.on_sparse_refused == OnSparseRefused::Fail {
            return Err(CopyError::SparseRefused {
                target: self.target.to_string(),
                chosen: choice.chosen.to_string(),
                detail: said,
            });
        }
        let rewritten = choice.rewrite(top)?;
        self.push_manifest(reference, &rewritten).await?;
        Ok(Landed {
            digest: rewritten.digest,
            rewritten: true,
        })
    }

    /// Writes one manifest under `reference`, in its span, counted; after a registry race,
    /// repairs what it lists and tries again.
    pub(crate) async fn push_manifest(
        &self,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), CopyError> {
        let p = self;
        let span = tracing::info_span!(
            "copy.manifest",
            digest = %manifest.digest,
            reference,
            media_type = manifest.media_type.as_str(),
        );
        let mut races = 0;
        loop {
            let pushed = self
                .parts
                .client
                .put_manifest(p.target, reference, manifest)
                .instrument(span.clone())
                .await;
            match pushed {
                Ok(()) => {
                    Counters::add(&p.counters.manifests_pushed, 1);
                    return Ok(());
                }
                Err(e) if is_registry_race(&e) && races < RACE_RETRIES => {
                    races += 1;
                    tracing::debug!(manifest = %manifest.digest, error = %e, "the registry lost track of what the manifest lists; checking it again");
                    Box::pin(self.repair(manifest)).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes sure the target holds everything `manifest` lists: blobs of an image manifest,
    /// child manifests of an index; whatever is missing is sent again.
    async fn repair(&self, manifest: &Manifest) -> Result<(), CopyError> {
        let (p, client) = (self, &self.parts.client);
        match manifest.kind() {
            ManifestKind::Image => {
                let blobs = manifest.blobs().map_err(CopyError::Invalid)?;
                for blob in &blobs {
                    if !client.blob_exists(p.target, &blob.digest).await? {
                        let meter = Watched::unwatched().blob(blob.size);
                        let copy = BlobCopy {
                            parts: p.parts,
                            source: p.source,
                            target: p.target,
                            blob,
                            counters: p.counters,
                            blob_states: p.blob_states,
                            meter: &meter,
                        };
                        bring(&copy, false, None).await?;
                    }
                }
            }
            ManifestKind::Index => {
                let children = p
                    .tree
                    .children
                    .get(&manifest.digest)
                    .cloned()
                    .unwrap_or_default();
                for digest in children {
                    let held = client.manifest_digest(p.target, digest.as_str()).await?;
                    if held.as_ref() == Some(&digest) {
                        continue;
                    }
                    let child = p.tree.manifest(&digest).ok_or_else(|| {
                        CopyError::Invalid(format!(
                            "child manifest {digest} vanished from the target"
                        ))
                    })?;
                    self.push_manifest(digest.as_str(), child).await?;
                }
            }
        }
        Ok(())
    }
}

/// What the top level of a copy landed as.
pub(crate) struct Landed {
    /// The digest the target's tag now holds.
    pub(crate) digest: Digest,
    /// It is an index cut for the chosen platforms, not the source's.
    pub(crate) rewritten: bool,
}

/// An index refused because it lists manifests the registry does not hold: distribution's
/// `MANIFEST_BLOB_UNKNOWN` (and the codes other registries use for the same).
fn refuses_sparse(e: &RegistryError) -> bool {
    match e {
        RegistryError::Status {
            status: 400 | 404 | 422,
            detail,
            ..
        } => [
            "MANIFEST_BLOB_UNKNOWN",
            "MANIFEST_UNKNOWN",
            "MANIFEST_INVALID",
            "BLOB_UNKNOWN",
        ]
        .iter()
        .any(|code| detail.contains(code)),
        _ => false,
    }
}

/// A push refused because the registry did not see a blob or manifest that was stored: the
/// answer of a registry that raced with another writer.
fn is_registry_race(e: &RegistryError) -> bool {
    match e {
        RegistryError::Status {
            status: 400,
            detail,
            ..
        } => [
            "MANIFEST_BLOB_UNKNOWN",
            "DIGEST_INVALID",
            "MANIFEST_UNKNOWN",
        ]
        .iter()
        .any(|code| detail.contains(code)),
        _ => false,
    }
}
