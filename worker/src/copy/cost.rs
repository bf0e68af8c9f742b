//! What a run would cost, before it runs (`image-mirror plan`): for each target registry, the
//! manifests and blobs it lacks, the bytes to send, and the bytes mounts and blobs shared
//! between entries save; for each source, the pulls reading its manifests spends and what its
//! quota says is left. Both ends are asked with HEADs; the manifests a copy would read are
//! read (the pulls a run would spend, counted as the client counts them); no blob is read.
//! Blobs are counted as the engine moves them: a blob goes to a registry once, later
//! repositories of that registry mount it.

use std::collections::{BTreeMap, HashSet};

use image_mirror_common::{Digest, ImageRef, MirrorJob, Repository};
use image_mirror_registry::{Descriptor, Manifest, ManifestHead, ManifestKind};

use crate::copy::engine::CopyEngine;
use crate::copy::error::CopyError;
use crate::copy::platforms::Choice;

/// What one target registry would receive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetCost {
    pub registry: String,
    /// Manifests to push (children and tops).
    pub manifests: u64,
    pub blobs_sent: u64,
    pub bytes_sent: u64,
    /// Blobs mounted from another repository of the registry (held there, or sent there by
    /// an earlier entry of the run).
    pub blobs_mounted: u64,
    pub bytes_mounted: u64,
    /// Blobs the target repository already holds.
    pub blobs_present: u64,
}

/// What the run would cost; see the module's documentation.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    /// Per target registry, in name order.
    pub targets: Vec<TargetCost>,
    /// Targets already holding their tag's digest.
    pub up_to_date: u64,
    /// Targets a copy would write.
    pub to_copy: u64,
    /// Jobs that could not be costed (`job`, why).
    pub errors: Vec<(String, String)>,
}

/// What the plan knows so far: each target registry's cost, and where blobs are planned.
#[derive(Default)]
struct Ledger {
    targets: BTreeMap<String, TargetCost>,
    /// (registry, repository, blob) sent or mounted by an earlier entry.
    placed: HashSet<(String, String, Digest)>,
    /// (registry, blob) sent to some repository of the registry.
    sent: HashSet<(String, Digest)>,
    up_to_date: u64,
    to_copy: u64,
}

impl CopyEngine {
    /// What running `jobs` would cost now; see the module's documentation.
    pub async fn cost(&self, jobs: &[MirrorJob]) -> Cost {
        let mut ledger = Ledger::default();
        let mut errors = Vec::new();
        for job in jobs {
            if let Err(e) = self.cost_job(job, &mut ledger).await {
                errors.push((job.describe(), e.to_string()));
            }
        }
        Cost {
            targets: ledger.targets.into_values().collect(),
            up_to_date: ledger.up_to_date,
            to_copy: ledger.to_copy,
            errors,
        }
    }

    /// One job: the targets lacking the source digest, and what the tree costs each.
    async fn cost_job(&self, job: &MirrorJob, ledger: &mut Ledger) -> Result<(), CopyError> {
        let client = self.client();
        let source: ImageRef = job.source_ref();
        let reference = source.reference();
        let (digest, read) = match client
            .head_manifest(source.repository(), &reference)
            .await?
        {
            ManifestHead::Missing => {
                return Err(CopyError::Invalid(format!(
                    "{source}: not found at the source"
                )))
            }
            ManifestHead::Found { digest, .. } => (digest, None),
            ManifestHead::Read(m) => (m.digest.clone(), Some(m)),
        };
        let mut lacking: Vec<Repository> = Vec::new();
        for target in job.targets() {
            let held = client.manifest_digest(&target, job.tag.as_str()).await?;
            if held.as_ref() == Some(&digest) {
                ledger.up_to_date += 1;
            } else {
                lacking.push(target);
            }
        }
        if lacking.is_empty() {
            return Ok(());
        }
        ledger.to_copy += lacking.len() as u64;
        let top = match read {
            Some(m) => m,
            None => {
                client
                    .get_manifest(source.repository(), digest.as_str())
                    .await?
            }
        };
        let platforms = job.platforms.as_ref().or(self.platforms());
        let children = self
            .children_costed(&source, &top, platforms, &lacking)
            .await?;
        for target in &lacking {
            self.cost_target(target, &top, &children, ledger).await?;
        }
        Ok(())
    }

    /// The child manifests of `top` a copy would read from the source (those some target in
    /// `lacking` does not hold), read; none for an image manifest.
    async fn children_costed(
        &self,
        source: &ImageRef,
        top: &Manifest,
        platforms: Option<&image_mirror_common::Platforms>,
        lacking: &[Repository],
    ) -> Result<Vec<(Manifest, Vec<Repository>)>, CopyError> {
        if top.kind() != ManifestKind::Index {
            return Ok(Vec::new());
        }
        let choice = Choice::of(top, platforms)?;
        let mut out = Vec::new();
        for child in top.children().map_err(CopyError::Invalid)? {
            if choice
                .as_ref()
                .is_some_and(|c| !c.keep.contains(&child.digest))
            {
                continue;
            }
            let mut wanting = Vec::new();
            for target in lacking {
                let held = self
                    .client()
                    .manifest_digest(target, child.digest.as_str())
                    .await?;
                if held.as_ref() != Some(&child.digest) {
                    wanting.push(target.clone());
                }
            }
            if wanting.is_empty() {
                continue;
            }
            let manifest = self
                .client()
                .get_manifest(source.repository(), child.digest.as_str())
                .await?;
            out.push((manifest, wanting));
        }
        Ok(out)
    }

    /// What `target` would receive of the tree: the manifests it lacks and their blobs.
    async fn cost_target(
        &self,
        target: &Repository,
        top: &Manifest,
        children: &[(Manifest, Vec<Repository>)],
        ledger: &mut Ledger,
    ) -> Result<(), CopyError> {
        let registry = target.registry().to_owned();
        let mut manifests = 1;
        let mut blobs: Vec<Descriptor> = Vec::new();
        if top.kind() == ManifestKind::Image {
            blobs.extend(top.blobs().map_err(CopyError::Invalid)?);
        }
        for (child, _) in children.iter().filter(|(_, w)| w.contains(target)) {
            manifests += 1;
            if child.kind() == ManifestKind::Image {
                blobs.extend(child.blobs().map_err(CopyError::Invalid)?);
            }
        }
        ledger
            .targets
            .entry(registry.clone())
            .or_insert_with(|| TargetCost {
                registry: registry.clone(),
                ..TargetCost::default()
            })
            .manifests += manifests;
        for blob in blobs {
            self.cost_blob(target, &blob, ledger).await?;
        }
        Ok(())
    }

    /// One blob at `target`: already there, mounted, or sent.
    async fn cost_blob(
        &self,
        target: &Repository,
        blob: &Descriptor,
        ledger: &mut Ledger,
    ) -> Result<(), CopyError> {
        let registry = target.registry().to_owned();
        let here = (
            registry.clone(),
            target.path().to_owned(),
            blob.digest.clone(),
        );
        if ledger.placed.contains(&here) {
            return Ok(());
        }
        let sent_before = ledger
            .sent
            .contains(&(registry.clone(), blob.digest.clone()));
        let present = !sent_before && self.client().blob_exists(target, &blob.digest).await?;
        let known_elsewhere = self.blob_known_elsewhere(target, &blob.digest);
        let cost = ledger
            .targets
            .entry(registry.clone())
            .or_insert_with(|| TargetCost {
                registry: registry.clone(),
                ..TargetCost::default()
            });
        if present {
            cost.blobs_present += 1;
        } else if sent_before || known_elsewhere {
            cost.blobs_mounted += 1;
            cost.bytes_mounted += blob.size;
        } else {
            cost.blobs_sent += 1;
            cost.bytes_sent += blob.size;
            ledger.sent.insert((registry, blob.digest.clone()));
        }
        ledger.placed.insert(here);
        Ok(())
    }
}

impl Cost {
    /// Bytes to send, every target registry together.
    pub fn bytes_sent(&self) -> u64 {
        self.targets.iter().map(|t| t.bytes_sent).sum()
    }

    /// Bytes mounts and blobs shared between entries save, every target registry together.
    pub fn bytes_mounted(&self) -> u64 {
        self.targets.iter().map(|t| t.bytes_mounted).sum()
    }
}
