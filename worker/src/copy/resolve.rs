//! The first step of a copy: what is there to do? Both ends are asked with HEADs (free where a
//! registry counts manifest GETs as pulls), and the source is read only for what a target
//! lacks:
//!
//! - the target tag has the source digest: nothing at all is read (and when the target record
//!   saw that recently, the target is not even asked: see `target_record.rs`);
//! - with only some platforms chosen, the target tag holds the index this mirror cut from the
//!   source digest for that choice (a target that refused the sparse index): it is read from
//!   the target, never from the source, and nothing else is;
//! - the target holds that digest under another tag (a new tag of an image it has): the
//!   manifest is read from the target and only the tag is pushed;
//! - else the tree is copied, its top manifest read from the source by digest, once for all
//!   the targets of the copy.

use futures_util::future::join_all;
use image_mirror_common::{Digest, ImageRef, Platforms, Repository};
use image_mirror_registry::{Manifest, ManifestHead, ManifestKind, RegistryClient, RegistryError};

use crate::copy::drift::{back_up, DriftPolicy, OnDrift};
use crate::copy::error::CopyError;
use crate::copy::platforms::{is_rewrite_of, listed_platforms};
use crate::copy::target_record::TargetRecord;

/// The first step of a copy, with what it reads: the registries, and what a drifted target
/// gets.
pub(crate) struct Resolve<'a> {
    pub(crate) client: &'a RegistryClient,
    pub(crate) drift: &'a DriftPolicy,
    /// The platforms chosen, when not all.
    pub(crate) platforms: Option<&'a Platforms>,
    /// What target tags were recently seen to hold.
    pub(crate) record: &'a TargetRecord,
}

/// The index a target holds in place of a sparse one: cut from the source index for the
/// chosen platforms.
pub(crate) struct Rewritten {
    pub(crate) digest: Digest,
    /// The platforms it lists.
    pub(crate) platforms: Vec<String>,
}

/// What one target needs.
pub(crate) enum Plan {
    /// The target tag already holds the source digest, or the index cut from it for the
    /// chosen platforms.
    UpToDate {
        media_type: Option<String>,
        rewritten: Option<Rewritten>,
    },
    /// The target holds the manifest by digest; only the tag is missing.
    Retag { manifest: Manifest },
    /// The target tag holds another digest, and the drift policy keeps it.
    Drifted {
        /// What the target tag holds.
        target: Digest,
    },
    /// The tree is to be copied from the source.
    Copy {
        /// The target repository did not exist (its tag list answered 404).
        target_is_new: bool,
    },
}

/// A target's plan and the reference it is written under (its tag, or the digest).
pub(crate) struct Resolution {
    pub(crate) plan: Plan,
    pub(crate) reference: String,
    /// The digest a drifted target held, when the policy overwrites it.
    pub(crate) replaces: Option<Digest>,
}

/// What the source HEAD found.
pub(crate) struct SourceHead {
    pub(crate) digest: Digest,
    pub(crate) media_type: Option<String>,
    /// The manifest itself, when the HEAD carried no digest and it had to be read.
    pub(crate) read: Option<Manifest>,
}

impl Resolve<'_> {
    /// Asks the source once and every target, at the same time, and decides what each target
    /// needs. A target tag the record saw recently holding a digest waits for the source's
    /// answer instead, and is not asked at all when the source still answers that digest. An
    /// error of the source is every target's; a target's own error is its alone.
    pub(crate) async fn resolve(
        &self,
        source: &ImageRef,
        targets: &[ImageRef],
    ) -> Result<(SourceHead, Vec<Result<Resolution, CopyError>>), CopyError> {
        let named: Vec<Option<String>> = targets
            .iter()
            .map(|t| t.tag().or(source.tag()).map(ToString::to_string))
            .collect();
        let recorded: Vec<Option<Digest>> = targets
            .iter()
            .zip(&named)
            .map(|(t, tag)| {
                tag.as_deref()
                    .and_then(|tag| self.record.held(t.repository(), tag))
            })
            .collect();
        let source_reference = source.reference();
        let dst_heads =
            targets
                .iter()
                .zip(&named)
                .zip(&recorded)
                .map(|((t, tag), recorded)| async move {
                    match recorded {
                        Some(_) => None,
                        None => Some(self.ask_target(t, tag.as_deref()).await),
                    }
                });
        let (src, dsts) = tokio::join!(
            self.client
                .head_manifest(source.repository(), &source_reference),
            join_all(dst_heads)
        );
        let head = source_head(source, &source_reference, src?)?;
        let dsts = targets.iter().zip(&named).zip(recorded).zip(dsts).map(
            |(((t, tag), recorded), dst)| {
                let head = &head;
                async move {
                    match dst {
                        Some(answer) => answer,
                        None if recorded.as_ref() == Some(&head.digest) => {
                            Ok(Some(head.digest.clone()))
                        }
                        None => self.ask_target(t, tag.as_deref()).await,
                    }
                }
            },
        );
        let dsts = join_all(dsts).await;
        let plans = targets
            .iter()
            .zip(named)
            .zip(dsts)
            .map(|((target, tag), dst)| self.plan_target(&head, target, tag, dst));
        let plans = join_all(plans).await;
        Ok((head, plans))
    }

    /// What the target's tag holds, asked with a HEAD (none without a tag), and recorded.
    async fn ask_target(
        &self,
        target: &ImageRef,
        tag: Option<&str>,
    ) -> Result<Option<Digest>, RegistryError> {
        let Some(tag) = tag else {
            return Ok(None);
        };
        let held = self
            .client
            .manifest_digest(target.repository(), tag)
            .await?;
        if let Some(d) = &held {
            self.record.saw(target.repository(), tag, d);
        }
        Ok(held)
    }

    /// What `target` needs, knowing the source digest and what its tag holds.
    async fn plan_target(
        &self,
        head: &SourceHead,
        target: &ImageRef,
        tag: Option<String>,
        dst: Result<Option<Digest>, RegistryError>,
    ) -> Result<Resolution, CopyError> {
        let dst_repo = target.repository();
        if let Some(d) = target.digest() {
            if *d != head.digest {
                return Err(CopyError::Invalid(format!(
                    "target {target} names digest {d}, but the source is {}",
                    head.digest
                )));
            }
        }
        let reference = tag.unwrap_or_else(|| head.digest.to_string());
        let dst = dst?;
        let up_to_date = Plan::UpToDate {
            media_type: head.media_type.clone(),
            rewritten: None,
        };
        if dst.as_ref() == Some(&head.digest) {
            return Ok(Resolution {
                plan: up_to_date,
                reference,
                replaces: None,
            });
        }
        if let (Some(held), Some(chosen)) = (&dst, self.platforms) {
            if let Some(plan) = self.cut_from_source(dst_repo, held, head, chosen).await? {
                return Ok(Resolution {
                    plan,
                    reference,
                    replaces: None,
                });
            }
        }
        let tag_absent = dst.is_none();
        let replaces = match dst {
            Some(held) if reference != head.digest.as_str() => {
                match self.drift_decision(dst_repo, &reference, &held).await? {
                    Some(plan) => {
                        return Ok(Resolution {
                            plan,
                            reference,
                            replaces: None,
                        })
                    }
                    None => Some(held),
                }
            }
            _ => None,
        };
        let mut resolution = self
            .plan_copy(head, dst_repo, reference, tag_absent)
            .await?;
        resolution.replaces = replaces;
        Ok(resolution)
    }

    /// Up to date when what the target tag holds (`held`) is the index cut from the source
    /// index for `chosen`: read from the target, which is the only place it can be known.
    async fn cut_from_source(
        &self,
        repo: &Repository,
        held: &Digest,
        head: &SourceHead,
        chosen: &Platforms,
    ) -> Result<Option<Plan>, CopyError> {
        let manifest = self.client.get_manifest(repo, held.as_str()).await?;
        if !is_rewrite_of(&manifest, &head.digest, chosen) {
            return Ok(None);
        }
        Ok(Some(Plan::UpToDate {
            media_type: Some(manifest.media_type.clone()),
            rewritten: Some(Rewritten {
                digest: held.clone(),
                platforms: listed_platforms(&manifest),
            }),
        }))
    }

    /// A drifted target (its tag holds `held`): the plan that keeps it, or `None` to overwrite
    /// it (after its backup tag, when the policy names one).
    async fn drift_decision(
        &self,
        repo: &Repository,
        reference: &str,
        held: &Digest,
    ) -> Result<Option<Plan>, CopyError> {
        match self.drift.on_drift {
            OnDrift::Keep => Ok(Some(Plan::Drifted {
                target: held.clone(),
            })),
            OnDrift::Overwrite => {
                if let Some(template) = &self.drift.backup_tag {
                    back_up(self.client, repo, reference, held, template).await?;
                }
                Ok(None)
            }
        }
    }

    /// What a target that lacks the source digest under its tag needs: a retag when it holds
    /// the manifest by digest, else a copy of the tree.
    async fn plan_copy(
        &self,
        head: &SourceHead,
        dst_repo: &Repository,
        reference: String,
        tag_absent: bool,
    ) -> Result<Resolution, CopyError> {
        let client = self.client;
        let up_to_date = Plan::UpToDate {
            media_type: head.media_type.clone(),
            rewritten: None,
        };
        // A repository that does not exist yet holds nothing: no need to ask for the digest.
        if tag_absent && client.repository_is_new(dst_repo).await {
            return Ok(Resolution {
                plan: Plan::Copy {
                    target_is_new: true,
                },
                reference,
                replaces: None,
            });
        }
        // A new tag of an image the target already has, or a target named by digest.
        let held = client
            .manifest_digest(dst_repo, head.digest.as_str())
            .await?;
        if held.as_ref() == Some(&head.digest) {
            let plan = if reference == head.digest.as_str() {
                up_to_date
            } else {
                Plan::Retag {
                    manifest: client.get_manifest(dst_repo, head.digest.as_str()).await?,
                }
            };
            return Ok(Resolution {
                plan,
                reference,
                replaces: None,
            });
        }
        Ok(Resolution {
            plan: Plan::Copy {
                target_is_new: false,
            },
            reference,
            replaces: None,
        })
    }

    /// The top manifest from the source, read once (unless the HEAD already had to read it).
    pub(crate) async fn source_top(
        &self,
        source: &ImageRef,
        head: SourceHead,
    ) -> Result<Manifest, CopyError> {
        match head.read {
            Some(m) => Ok(m),
            None => Ok(self
                .client
                .get_manifest(source.repository(), head.digest.as_str())
                .await?),
        }
    }
}

/// What the source's HEAD of `reference` found, or the error of a source that lacks it.
fn source_head(
    source: &ImageRef,
    reference: &str,
    head: ManifestHead,
) -> Result<SourceHead, CopyError> {
    match head {
        ManifestHead::Missing => Err(RegistryError::NotFound {
            registry: source.repository().registry().to_owned(),
            operation: format!("HEAD manifest {}:{reference}", source.repository().path()),
        }
        .into()),
        ManifestHead::Found { digest, media_type } => Ok(SourceHead {
            digest,
            media_type,
            read: None,
        }),
        ManifestHead::Read(m) => Ok(SourceHead {
            digest: m.digest.clone(),
            media_type: Some(m.media_type.clone()),
            read: Some(m),
        }),
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
