//! Reading the source tree: every manifest below the top that the target lacks, each once.
//!
//! When only some platforms are chosen, the top index's other entries are not followed:
//! neither read nor pushed, and none of their blobs crosses.
//!
//! An index's children are deduplicated by digest (a child listed 10,000 times is fetched,
//! checked and pushed once); a child the target already holds by digest is neither read nor
//! pushed, nor is anything below it (the registry keeps what a manifest lists). Each image
//! manifest hands its blobs to the transfers as soon as it is read. A tree of more than
//! [`MAX_MANIFESTS`] distinct manifests, or more than [`MAX_MANIFEST_TOTAL`] bytes of them, or
//! nested deeper than [`MAX_DEPTH`], is refused.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::{stream, StreamExt, TryStreamExt};
use image_mirror_common::{Digest, Repository};
use image_mirror_registry::{Descriptor, Manifest, ManifestKind, RegistryClient};
use tokio::sync::mpsc;

use crate::copy::blob_states::BlobStates;
use crate::copy::error::CopyError;

/// Deepest nesting of indexes followed.
pub const MAX_DEPTH: usize = 4;
/// The most distinct manifests one image may have.
pub const MAX_MANIFESTS: usize = 1000;
/// The most manifest bytes one copy reads.
pub const MAX_MANIFEST_TOTAL: usize = 64 * 1024 * 1024;

/// The part of the source tree the target lacks, children before their parents.
pub(crate) struct Tree {
    /// The manifests to push, each once, children before parents; the top one last.
    pub(crate) manifests: Vec<Manifest>,
    /// The blobs each image manifest lists, by the manifest's digest.
    pub(crate) blobs: HashMap<Digest, Vec<Descriptor>>,
    /// The distinct children each index lists, by the index's digest.
    pub(crate) children: HashMap<Digest, Vec<Digest>>,
    /// Platforms of the top index, each once, in its order.
    pub(crate) platforms: Vec<String>,
    /// When the last manifest had been read.
    pub(crate) resolved: Instant,
}

impl Tree {
    /// A tree of one manifest, already complete at the target.
    pub(crate) fn single(manifest: Manifest) -> Self {
        Self {
            manifests: vec![manifest],
            blobs: HashMap::new(),
            children: HashMap::new(),
            platforms: Vec::new(),
            resolved: Instant::now(),
        }
    }

    /// A manifest of the tree by digest.
    pub(crate) fn manifest(&self, digest: &Digest) -> Option<&Manifest> {
        self.manifests.iter().find(|m| &m.digest == digest)
    }
}

/// One index waiting for its children to be read, or a manifest whose children are done.
struct Node {
    manifest: Manifest,
    depth: usize,
    expanded: bool,
}

/// What one walk has read so far, against its limits.
#[derive(Default)]
struct Tally {
    manifests: usize,
    bytes: usize,
}

impl Tally {
    fn take(&mut self, manifest: &Manifest) -> Result<(), CopyError> {
        self.manifests += 1;
        self.bytes += manifest.bytes.len();
        if self.manifests > MAX_MANIFESTS {
            return Err(CopyError::Invalid(format!(
                "the image has more than {MAX_MANIFESTS} distinct manifests; refusing it"
            )));
        }
        if self.bytes > MAX_MANIFEST_TOTAL {
            return Err(CopyError::Invalid(format!(
                "the image's manifests are over {} MiB in all; refusing it",
                MAX_MANIFEST_TOTAL >> 20
            )));
        }
        Ok(())
    }
}

/// One target of a walk: where it is, and where its blobs go.
pub(crate) struct WalkTarget<'a> {
    pub(crate) repo: &'a Repository,
    /// The target repository did not exist when the copy began: it holds no child.
    pub(crate) is_new: bool,
    pub(crate) found: mpsc::UnboundedSender<Descriptor>,
    pub(crate) blob_states: &'a BlobStates,
}

/// A walk of one copy, for all its targets at once: a child is read when any target lacks it.
pub(crate) struct Walk<'a> {
    pub(crate) client: &'a RegistryClient,
    /// The entries of the top index the chosen platforms keep (all when `None`).
    pub(crate) keep: Option<&'a HashSet<Digest>>,
    /// Manifests read (and targets asked) at once.
    pub(crate) concurrency: usize,
    pub(crate) source: &'a Repository,
    pub(crate) targets: Vec<WalkTarget<'a>>,
}

impl Walk<'_> {
    /// Reads every manifest below `top` that the target lacks, checking each child's digest
    /// and size, and hands the blobs of each image manifest to `found` as soon as that
    /// manifest is read (each blob once, the largest first); `found` closes when the walk ends.
    pub(crate) async fn run(self, top: Manifest) -> Result<Tree, CopyError> {
        let mut tree = Tree {
            manifests: Vec::new(),
            blobs: HashMap::new(),
            children: HashMap::new(),
            platforms: Vec::new(),
            resolved: Instant::now(),
        };
        let mut budget = Tally::default();
        budget.take(&top)?;
        let mut handed = HashSet::new();
        let mut seen: HashSet<Digest> = HashSet::from([top.digest.clone()]);
        if top.kind() == ManifestKind::Image {
            self.hand_over(&top, &mut tree, &mut handed)?;
        }
        let mut stack = vec![Node {
            manifest: top,
            depth: 0,
            expanded: false,
        }];
        while let Some(node) = stack.pop() {
            if node.expanded || node.manifest.kind() == ManifestKind::Image {
                tree.manifests.push(node.manifest);
                continue;
            }
            if node.depth >= MAX_DEPTH {
                return Err(CopyError::Invalid(format!(
                    "indexes nested deeper than {MAX_DEPTH} levels"
                )));
            }
            let mut listed = node.manifest.children().map_err(CopyError::Invalid)?;
            if node.depth == 0 {
                tree.platforms = platforms(&listed);
                if let Some(keep) = self.keep {
                    listed.retain(|c| keep.contains(&c.digest));
                }
            }
            let children = distinct(listed);
            tree.children.insert(
                node.manifest.digest.clone(),
                children.iter().map(|c| c.digest.clone()).collect(),
            );
            let wanted: Vec<Descriptor> = children
                .into_iter()
                .filter(|c| seen.insert(c.digest.clone()))
                .collect();
            let missing = self.missing_at_target(wanted).await?;
            let arrived = self
                .fetch(missing, &mut budget, &mut tree, &mut handed)
                .await?;
            let depth = node.depth;
            stack.push(Node {
                expanded: true,
                ..node
            });
            stack.extend(arrived.into_iter().rev().map(|manifest| Node {
                manifest,
                depth: depth + 1,
                expanded: false,
            }));
        }
        tree.resolved = Instant::now();
        Ok(tree)
    }

    /// The children some target does not hold by digest (all of them when a target's
    /// repository is new).
    async fn missing_at_target(
        &self,
        children: Vec<Descriptor>,
    ) -> Result<Vec<Descriptor>, CopyError> {
        if self.targets.iter().any(|t| t.is_new) {
            return Ok(children);
        }
        let client = self.client;
        let checks = children.into_iter().map(|child| -> BoxFuture<'_, _> {
            Box::pin(async move {
                for t in &self.targets {
                    let held = client
                        .manifest_digest(t.repo, child.digest.as_str())
                        .await?;
                    if held.as_ref() != Some(&child.digest) {
                        return Ok::<_, CopyError>(Some(child));
                    }
                }
                Ok(None)
            })
        });
        let found: Vec<Option<Descriptor>> = stream::iter(checks)
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Reads `children` from the source, in order, handing each image manifest's blobs over
    /// as it arrives.
    async fn fetch(
        &self,
        children: Vec<Descriptor>,
        budget: &mut Tally,
        tree: &mut Tree,
        handed: &mut HashSet<Digest>,
    ) -> Result<Vec<Manifest>, CopyError> {
        let client = self.client;
        let fetches = children.into_iter().map(|child| -> BoxFuture<'_, _> {
            Box::pin(async move {
                let m = client
                    .get_manifest(self.source, child.digest.as_str())
                    .await?;
                if m.bytes.len() as u64 != child.size {
                    return Err(CopyError::Invalid(format!(
                        "manifest {} is {} bytes, its descriptor says {}",
                        child.digest,
                        m.bytes.len(),
                        child.size
                    )));
                }
                Ok(m)
            })
        });
        let mut fetched = stream::iter(fetches).buffered(self.concurrency.max(1));
        let mut arrived = Vec::new();
        while let Some(m) = fetched.try_next().await? {
            budget.take(&m)?;
            if m.kind() == ManifestKind::Image {
                self.hand_over(&m, tree, handed)?;
            }
            arrived.push(m);
        }
        Ok(arrived)
    }

    /// Records an image manifest's blobs and hands those not handed yet to the transfers.
    fn hand_over(
        &self,
        manifest: &Manifest,
        tree: &mut Tree,
        handed: &mut HashSet<Digest>,
    ) -> Result<(), CopyError> {
        let blobs = manifest.blobs().map_err(CopyError::Invalid)?;
        let mut new: Vec<Descriptor> = blobs
            .iter()
            .filter(|b| handed.insert(b.digest.clone()))
            .cloned()
            .collect();
        tree.blobs.insert(manifest.digest.clone(), blobs);
        new.sort_by_key(|b| std::cmp::Reverse(b.size));
        for blob in new {
            for t in &self.targets {
                t.blob_states.listed(&blob.digest);
                // A closed channel means that target's transfers failed; their error is the
                // one reported for it.
                let _ = t.found.send(blob.clone());
            }
        }
        Ok(())
    }
}

/// The children of an index, each digest once (the first entry of each).
fn distinct(children: Vec<Descriptor>) -> Vec<Descriptor> {
    let mut seen = HashSet::new();
    children
        .into_iter()
        .filter(|c| seen.insert(c.digest.clone()))
        .collect()
}

/// The platforms of an index's children, each once, in order.
fn platforms(children: &[Descriptor]) -> Vec<String> {
    let mut seen = HashSet::new();
    children
        .iter()
        .filter_map(|c| c.platform.clone())
        .filter(|p| seen.insert(p.clone()))
        .collect()
}
