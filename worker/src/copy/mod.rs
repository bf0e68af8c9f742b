//! The copy engine: one image reference (tag or digest), source to target, byte for byte.
//!
//! 1. Read the source manifest raw and check its digest; when the target already resolves to
//!    it, stop: already present.
//! 2. Walk the manifest tree (indexes and manifest lists, every platform, attestations).
//! 3. Meanwhile, copy every blob the target lacks (skip, mount, or stream), each as soon as
//!    the manifest listing it has been read.
//! 4. Push child manifests by digest, each as soon as its own blobs are in the target and every
//!    blob of the image has matched its digest; then the top level by tag.
//! 5. Check that the target resolves to the source digest.

mod blob_copy;
mod error;
mod mounts;
mod progress;
mod report;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt, TryStreamExt};
use image_mirror_common::registry::{Descriptor, Manifest, ManifestKind, RegistryClient};
use image_mirror_common::{metrics, Digest, ImageRef, Repository};
use tokio::sync::mpsc;
use tracing::Instrument;

pub use error::CopyError;
pub use mounts::MountIndex;
pub use report::{CopyOutcome, CopyReport, Phases};

use crate::copy::blob_copy::BlobOutcome;
use crate::copy::progress::Progress;
use crate::copy::report::Counters;

/// How a target stands against its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The target has the source digest.
    UpToDate {
        /// The digest at both ends.
        digest: image_mirror_common::Digest,
    },
    /// The target tag does not exist.
    Missing {
        /// The source digest.
        source: image_mirror_common::Digest,
    },
    /// The target tag points elsewhere.
    Differs {
        /// The source digest.
        source: image_mirror_common::Digest,
        /// What the target holds.
        target: image_mirror_common::Digest,
    },
}

/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 4;

/// Tuning of the copy engine.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Bytes per upload chunk of a large blob (raised to the registry's minimum).
    pub chunk_size: u64,
    /// Blobs up to this size are streamed in one request (a broken one starts over).
    pub single_request_max: u64,
    /// Blobs of one image copied at the same time.
    pub blob_concurrency: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            chunk_size: 16 * 1024 * 1024,
            single_request_max: 16 * 1024 * 1024,
            blob_concurrency: 8,
        }
    }
}

/// Copies images; one engine serves a whole process, sharing connections and the knowledge of
/// where blobs are (for mounts).
#[derive(Clone)]
pub struct CopyEngine {
    client: RegistryClient,
    mounts: Arc<MountIndex>,
    options: CopyOptions,
}

/// The source tree, children before their parents.
struct Tree {
    manifests: Vec<Manifest>,
    /// The blobs each image manifest lists, by the manifest's digest.
    blobs: HashMap<Digest, Vec<Digest>>,
    platforms: Vec<String>,
    /// When the last manifest had been read.
    resolved: Instant,
}

/// A blob's copy as the transfer stream holds it.
type BlobTask<'a> = Pin<Box<dyn Future<Output = Result<BlobOutcome, CopyError>> + Send + 'a>>;

impl CopyEngine {
    /// An engine over `client` that remembers blob locations for this process only.
    pub fn new(client: RegistryClient, options: CopyOptions) -> Self {
        Self::with_mounts(client, options, MountIndex::in_memory())
    }

    /// An engine over `client` with the given blob location index.
    pub fn with_mounts(client: RegistryClient, options: CopyOptions, mounts: MountIndex) -> Self {
        Self {
            client,
            mounts: Arc::new(mounts),
            options,
        }
    }

    /// The registry client the engine uses.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Copies `source` to `target`. The target takes the source's tag when it names none.
    pub async fn copy(
        &self,
        source: &ImageRef,
        target: &ImageRef,
    ) -> Result<CopyReport, CopyError> {
        let started = Instant::now();
        let resolve_span = tracing::info_span!(
            "copy.resolve",
            source = %source,
            digest = tracing::field::Empty,
            media_type = tracing::field::Empty,
        );
        let resolve_guard = resolve_span.clone();
        let src_repo = source.repository();
        let dst_repo = target.repository();
        // The target tag (the source's when the target names none) is asked about while the
        // source manifest is read: one round trip for an image that is already mirrored.
        let named = target.tag().or(source.tag()).map(ToString::to_string);
        let source_reference = source.reference();
        let (top, existing) = match &named {
            Some(reference) => {
                let (top, existing) = async {
                    tokio::join!(
                        self.client.get_manifest(src_repo, &source_reference),
                        self.client.manifest_digest(dst_repo, reference)
                    )
                }
                .instrument(resolve_guard.clone())
                .await;
                (top?, existing?)
            }
            None => {
                let top = self
                    .client
                    .get_manifest(src_repo, &source.reference())
                    .instrument(resolve_guard.clone())
                    .await?;
                let existing = self
                    .client
                    .manifest_digest(dst_repo, top.digest.as_str())
                    .instrument(resolve_guard.clone())
                    .await?;
                (top, existing)
            }
        };
        resolve_span.record("digest", tracing::field::display(&top.digest));
        resolve_span.record("media_type", top.media_type.as_str());
        if let Some(d) = target.digest() {
            if *d != top.digest {
                return Err(CopyError::Invalid(format!(
                    "target {target} names digest {d}, but the source is {}",
                    top.digest
                )));
            }
        }
        let dst_reference = named.unwrap_or_else(|| top.digest.to_string());
        if existing.as_ref() == Some(&top.digest) {
            let platforms = match top.kind() {
                ManifestKind::Index => top
                    .children()
                    .map_err(CopyError::Invalid)?
                    .into_iter()
                    .filter_map(|c| c.platform)
                    .collect(),
                ManifestKind::Image => Vec::new(),
            };
            return Ok(CopyReport {
                outcome: CopyOutcome::AlreadyPresent,
                digest: top.digest,
                media_type: top.media_type,
                platforms,
                bytes_sent: 0,
                blobs_copied: 0,
                blobs_mounted: 0,
                blobs_skipped: 0,
                manifests_pushed: 0,
                resumes: 0,
                duration: started.elapsed(),
                phases: Phases {
                    resolve: started.elapsed(),
                    ..Phases::default()
                },
            });
        }

        // The source tree is read while its blobs are copied: each image manifest hands its
        // blobs over as soon as it is read. Whether the target repository exists is asked
        // meanwhile (a tag there says it does): in a new one, no blob needs a HEAD first.
        // Child manifests go up while the other platforms' blobs are still on their way.
        let counters = Counters::default();
        let progress = Progress::new();
        let (found, listed) = mpsc::unbounded_channel::<Descriptor>();
        let walk = self
            .walk(src_repo, top, found, &progress)
            .instrument(resolve_guard.clone());
        let probe = async { existing.is_none() && self.client.repository_is_new(dst_repo).await }
            .instrument(resolve_guard);
        let transfers = async {
            let target_is_new = probe.await;
            let listed = stream::unfold(listed, |mut rx| async move {
                rx.recv().await.map(|blob| (blob, rx))
            });
            listed
                .map(|blob| {
                    self.blob_task(
                        src_repo,
                        dst_repo,
                        blob,
                        target_is_new,
                        &counters,
                        &progress,
                    )
                })
                .buffer_unordered(self.options.blob_concurrency.max(1))
                .try_collect::<Vec<_>>()
                .await
        };
        let (tree, _) = tokio::try_join!(
            async {
                let tree = walk.await;
                drop(resolve_span);
                let tree = tree?;
                progress.walked();
                self.push_children(dst_repo, &tree, &progress, &counters)
                    .await?;
                Ok(tree)
            },
            transfers
        )?;
        let resolved = tree.resolved.saturating_duration_since(started);
        let transferred = started.elapsed();

        // Nested indexes in order, each after its own children, then the top level.
        let (children, top) = tree.manifests.split_at(tree.manifests.len() - 1);
        let top = &top[0];
        let nested = children.iter().filter(|m| m.kind() == ManifestKind::Index);
        for index in nested {
            self.push_manifest(dst_repo, index.digest.as_str(), index, &counters)
                .await?;
        }
        self.push_manifest(dst_repo, &dst_reference, top, &counters)
            .await?;

        let found = self
            .client
            .manifest_digest(dst_repo, &dst_reference)
            .await?;
        if found.as_ref() != Some(&top.digest) {
            return Err(CopyError::Verify {
                target: format!("{dst_repo}:{dst_reference}"),
                found: found.map_or_else(|| "nothing".to_owned(), |d| d.to_string()),
                expected: top.digest.to_string(),
            });
        }
        Ok(CopyReport {
            outcome: CopyOutcome::Copied,
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            platforms: tree.platforms,
            bytes_sent: Counters::get(&counters.bytes_sent),
            blobs_copied: Counters::get(&counters.blobs_copied),
            blobs_mounted: Counters::get(&counters.blobs_mounted),
            blobs_skipped: Counters::get(&counters.blobs_skipped),
            manifests_pushed: Counters::get(&counters.manifests_pushed),
            resumes: Counters::get(&counters.resumes),
            duration: started.elapsed(),
            phases: Phases {
                resolve: resolved,
                blobs: transferred.saturating_sub(resolved),
                manifests: started.elapsed().saturating_sub(transferred),
            },
        })
    }

    /// What a copy would do, reading only: the source digest and whether the target has it.
    pub async fn compare(
        &self,
        source: &ImageRef,
        target: &ImageRef,
    ) -> Result<Comparison, CopyError> {
        let reference = target
            .tag()
            .or(source.tag())
            .map(ToString::to_string)
            .unwrap_or_else(|| source.reference());
        let source_reference = source.reference();
        let (src, dst) = tokio::join!(
            self.client
                .manifest_digest(source.repository(), &source_reference),
            self.client.manifest_digest(target.repository(), &reference)
        );
        let src = src?.ok_or_else(|| {
            CopyError::Registry(image_mirror_common::registry::RegistryError::NotFound {
                registry: source.repository().registry().to_owned(),
                operation: format!(
                    "HEAD manifest {}:{}",
                    source.repository().path(),
                    source.reference()
                ),
            })
        })?;
        Ok(match dst? {
            None => Comparison::Missing { source: src },
            Some(d) if d == src => Comparison::UpToDate { digest: src },
            Some(d) => Comparison::Differs {
                source: src,
                target: d,
            },
        })
    }

    /// Pushes the image manifests below the top level by digest, all at once (a PUT of a
    /// manifest the target has costs no more than asking whether it has it), each as soon as
    /// [`Progress`] allows: its blobs in the target, every blob of the image checked.
    async fn push_children(
        &self,
        target: &Repository,
        tree: &Tree,
        progress: &Progress,
        counters: &Counters,
    ) -> Result<(), CopyError> {
        let Some((_top, children)) = tree.manifests.split_last() else {
            return Ok(());
        };
        let mut pushes = Vec::new();
        for child in children.iter().filter(|m| m.kind() == ManifestKind::Image) {
            let blobs = tree.blobs.get(&child.digest).map_or(&[][..], Vec::as_slice);
            pushes.push(async move {
                progress.ready_for(blobs).await;
                self.push_manifest(target, child.digest.as_str(), child, counters)
                    .await
            });
        }
        // Waiting costs nothing; the per-host request limit bounds the PUTs themselves.
        futures_util::future::try_join_all(pushes).await?;
        Ok(())
    }

    /// One blob's copy in its span, counted in the metrics. Boxed, so that the copy future
    /// made in the transfer stream stays `Send` for spawned workers (rust#102211).
    fn blob_task<'a>(
        &'a self,
        source: &'a Repository,
        target: &'a Repository,
        blob: Descriptor,
        target_is_new: bool,
        counters: &'a Counters,
        progress: &'a Progress,
    ) -> BlobTask<'a> {
        let span = tracing::info_span!(
            "copy.blob",
            digest = %blob.digest,
            size = blob.size,
            action = tracing::field::Empty,
            bytes_sent = tracing::field::Empty,
        );
        let recorded = span.clone();
        Box::pin(
            async move {
                let outcome = self
                    .copy_blob(source, target, &blob, target_is_new, counters, progress)
                    .await?;
                let (action, sent) = match outcome {
                    BlobOutcome::Copied => ("copied", blob.size),
                    BlobOutcome::Mounted => ("mounted", 0),
                    BlobOutcome::Skipped => ("skipped", 0),
                };
                recorded.record("action", action);
                recorded.record("bytes_sent", sent);
                metrics::BLOBS.inc(&[action]);
                Ok(outcome)
            }
            .instrument(span),
        )
    }

    /// Reads every manifest below `top`, checking each child's digest and size, and hands the
    /// blobs of each image manifest to `found` as soon as that manifest is read (each blob
    /// once, the largest first); `found` closes when the walk ends.
    async fn walk(
        &self,
        repo: &Repository,
        top: Manifest,
        found: mpsc::UnboundedSender<Descriptor>,
        progress: &Progress,
    ) -> Result<Tree, CopyError> {
        let mut tree = Tree {
            manifests: Vec::new(),
            blobs: HashMap::new(),
            platforms: Vec::new(),
            resolved: Instant::now(),
        };
        let mut handed = HashSet::new();
        let mut lists = HashMap::new();
        let mut hand_over = |manifest: &Manifest| -> Result<(), CopyError> {
            if manifest.kind() != ManifestKind::Image {
                return Ok(());
            }
            let mut blobs = manifest.blobs().map_err(CopyError::Invalid)?;
            lists.insert(
                manifest.digest.clone(),
                blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>(),
            );
            blobs.retain(|b| handed.insert(b.digest.clone()));
            blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
            for blob in blobs {
                progress.listed(&blob.digest);
                // A closed channel means the transfers failed; their error is the one reported.
                let _ = found.send(blob);
            }
            Ok(())
        };
        // (manifest, depth, children done)
        let mut stack: Vec<(Manifest, usize, bool)> = vec![(top, 0, false)];
        while let Some((manifest, depth, expanded)) = stack.pop() {
            if expanded || manifest.kind() == ManifestKind::Image {
                // Children were handed over when they arrived; only a top-level image is left.
                if depth == 0 {
                    hand_over(&manifest)?;
                }
                if !tree.manifests.iter().any(|m| m.digest == manifest.digest) {
                    tree.manifests.push(manifest);
                }
                continue;
            }
            if depth >= MAX_DEPTH {
                return Err(CopyError::Invalid(format!(
                    "indexes nested deeper than {MAX_DEPTH} levels"
                )));
            }
            let children = manifest.children().map_err(CopyError::Invalid)?;
            if depth == 0 {
                tree.platforms = children.iter().filter_map(|c| c.platform.clone()).collect();
            }
            stack.push((manifest, depth, true));
            let fetches: Vec<_> = children
                .iter()
                .map(|child| async move {
                    let m = self
                        .client
                        .get_manifest(repo, child.digest.as_str())
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
                .collect();
            let mut fetched = stream::iter(fetches).buffered(self.options.blob_concurrency.max(1));
            let mut arrived = Vec::new();
            while let Some(m) = fetched.try_next().await? {
                hand_over(&m)?;
                arrived.push(m);
            }
            for m in arrived.into_iter().rev() {
                stack.push((m, depth + 1, false));
            }
        }
        tree.blobs = lists;
        tree.resolved = Instant::now();
        Ok(tree)
    }

    /// Writes one manifest under `reference` (its digest, or the tag), in its span, counted.
    async fn push_manifest(
        &self,
        target: &Repository,
        reference: &str,
        manifest: &Manifest,
        counters: &Counters,
    ) -> Result<(), CopyError> {
        let span = tracing::info_span!(
            "copy.manifest",
            digest = %manifest.digest,
            reference,
            media_type = manifest.media_type.as_str(),
        );
        self.client
            .put_manifest(target, reference, manifest)
            .instrument(span)
            .await?;
        Counters::add(&counters.manifests_pushed, 1);
        Ok(())
    }
}
