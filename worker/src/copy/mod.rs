//! The copy engine: one image reference (tag or digest), source to target, byte for byte, in
//! four named steps:
//!
//! 1. [`resolve`](resolve): HEAD both ends; when the target tag has the source digest, stop
//!    (already present, nothing read); when the target holds the digest under another tag,
//!    read the manifest there and push only the tag; else read the top manifest from the source.
//! 2. transfer: walk the manifest tree ([`walk`]: every child the target lacks, each once)
//!    while the blobs the target lacks are copied ([`blob_copy`]: skip, mount, or stream, each
//!    as soon as the manifest listing it has been read, one flight per blob and registry).
//! 3. [`push`]: child manifests by digest, each as soon as its own blobs are in the target and
//!    every blob of the image has matched its digest; nested indexes; the top level by tag.
//! 4. verify: the target resolves to the source digest.
//!
//! Then, when asked, what travels with the image ([`attachments`]): its referrers and
//! cosign's digest tags.

mod attachments;
mod blob_copy;
mod compare;
mod copying;
mod drift;
mod error;
mod fleet;
mod flights;
mod mounts;
mod progress;
mod push;
mod report;
mod resolve;
mod signatures;
mod source;
mod tee;
mod upload;
mod walk;

use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt, TryStreamExt};
use image_mirror_common::{metrics, Digest, ImageRef, Repository};
use image_mirror_queue::coordination::Coordinator;
use image_mirror_queue::QueueError;
use image_mirror_registry::{Descriptor, Manifest, RegistryClient};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

pub use attachments::{AttachOptions, Attached, DIGEST_TAG_SUFFIXES};
pub use compare::Comparison;
pub use drift::{BackupTag, DriftPolicy, OnDrift};
pub use error::CopyError;
pub use mounts::MountIndex;
pub use push::RACE_RETRIES;
pub use report::{CopyOutcome, CopyReport, Phases};
pub use signatures::{verify_bundle, verify_simple_signing, TrustedKeys};
pub use walk::{MAX_DEPTH, MAX_MANIFESTS, MAX_MANIFEST_TOTAL};

use crate::copy::attachments::Attach;
use crate::copy::blob_copy::BlobOutcome;
use crate::copy::copying::{finish, Copying};
use crate::copy::fleet::Fleet;
use crate::copy::flights::Flights;
use crate::copy::push::Pushing;
use crate::copy::resolve::{platforms_of, Plan, Resolution};
use crate::copy::tee::{Supplies, Supply};
use crate::copy::upload::Transfer;
use crate::copy::walk::{Tree, Walk, WalkTarget};

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

/// Copies images; one engine serves a whole process, sharing connections, the knowledge of
/// where blobs are (for mounts), and the blob flights under way.
#[derive(Clone)]
pub struct CopyEngine {
    client: RegistryClient,
    mounts: Arc<MountIndex>,
    flights: Arc<Flights>,
    /// In a fleet of workers: leases, shared locations, checkpoints across processes.
    fleet: Option<Arc<Fleet>>,
    options: CopyOptions,
    /// What a drifted target gets: kept (the default) or overwritten.
    drift: Arc<DriftPolicy>,
    /// What travels with each image (nothing by default).
    attach: Arc<Attach>,
}

/// A blob's copy as the transfer stream holds it.
type BlobTask<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<BlobOutcome, CopyError>> + Send + 'a>,
>;

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
            flights: Arc::default(),
            fleet: None,
            options,
            drift: Arc::default(),
            attach: Arc::default(),
        }
    }

    /// This engine copying what `options` say travels with each image.
    #[must_use]
    pub fn with_attachments(mut self, options: AttachOptions) -> Self {
        self.attach = Arc::new(Attach::new(options, self.attach.keys.clone()));
        self
    }

    /// This engine mirroring only images a cosign signature of one of `keys` verifies.
    #[must_use]
    pub fn with_trusted_keys(mut self, keys: TrustedKeys) -> Self {
        self.attach = Arc::new(Attach::new(self.attach.options.clone(), keys));
        self
    }

    /// This engine with `policy` for drifted targets (a target tag that holds another
    /// digest than the source's).
    #[must_use]
    pub fn with_drift(mut self, policy: DriftPolicy) -> Self {
        self.drift = Arc::new(policy);
        self
    }

    /// This engine as a member of the fleet `coordinator` speaks for: each large blob goes to
    /// a registry once across workers, the others mount it, and an upload a worker left
    /// unfinished is taken over where it stopped (see `fleet.rs`).
    pub async fn join_fleet(mut self, coordinator: Coordinator) -> Result<Self, QueueError> {
        self.fleet = Some(Fleet::join(coordinator, Arc::clone(&self.mounts), &self.client).await?);
        Ok(self)
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
        let mut results = self.copy_many(source, std::slice::from_ref(target)).await;
        results
            .pop()
            .unwrap_or_else(|| Err(CopyError::Invalid("no target".into())))
    }

    /// Copies `source` to every target at once, reading the source once for all of them: its
    /// manifests, and each blob more than one target lacks (downloaded once, its pieces handed
    /// to each; see `tee.rs`), then what travels with it. One result per target, in their
    /// order; a target's failure is its own.
    pub async fn copy_many(
        &self,
        source: &ImageRef,
        targets: &[ImageRef],
    ) -> Vec<Result<CopyReport, CopyError>> {
        self.copy_many_with(source, targets, &AttachOptions::default())
            .await
    }

    /// [`copy_many`](Self::copy_many), with `more` travelling with the image besides what the
    /// engine's options say (a job's own asks).
    pub async fn copy_many_with(
        &self,
        source: &ImageRef,
        targets: &[ImageRef],
        more: &AttachOptions,
    ) -> Vec<Result<CopyReport, CopyError>> {
        let options = self.attach.options.with(more);
        let (source, verified_by) = match self.signed(source).await {
            Ok(signed) => signed,
            Err(e) => return targets.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results = self.copy_images(&source, targets).await;
        for report in results.iter_mut().flatten() {
            report.attached.verified_by.clone_from(&verified_by);
        }
        if !options.any() {
            return results;
        }
        for (result, target) in results.iter_mut().zip(targets) {
            let Ok(report) = result else { continue };
            if report.outcome == CopyOutcome::Drifted {
                continue;
            }
            let (from, to) = (source.repository(), target.repository());
            match self.attach(from, to, &report.digest, &options).await {
                Ok(attached) => {
                    report.attached.referrers = attached.referrers;
                    report.attached.digest_tags = attached.digest_tags;
                }
                Err(e) => *result = Err(e.into_target_refusal(to)),
            }
        }
        results
    }

    /// The images alone: see [`copy_many`](Self::copy_many).
    pub(crate) async fn copy_images(
        &self,
        source: &ImageRef,
        targets: &[ImageRef],
    ) -> Vec<Result<CopyReport, CopyError>> {
        let span = tracing::info_span!(
            "copy.resolve",
            source = %source,
            digest = tracing::field::Empty,
            media_type = tracing::field::Empty,
        );
        let started = Instant::now();
        let (head, plans) = match self.resolve(source, targets).instrument(span.clone()).await {
            Ok(resolved) => resolved,
            Err(e) => return targets.iter().map(|_| Err(e.clone())).collect(),
        };
        span.record("digest", tracing::field::display(&head.digest));
        let mut results: Vec<Option<Result<CopyReport, CopyError>>> = Vec::new();
        let mut replaced = Vec::new();
        let mut to_copy = Vec::new();
        let mut finishing = Vec::new();
        for (i, (plan, target)) in plans.into_iter().zip(targets).enumerate() {
            results.push(None);
            replaced.push(plan.as_ref().ok().and_then(|r| r.replaces.clone()));
            let c = Copying::new(source.repository(), target.repository(), started);
            match plan {
                Err(e) => results[i] = Some(Err(e)),
                Ok(Resolution {
                    plan: Plan::Drifted { target },
                    ..
                }) => {
                    let media_type = head.media_type.clone();
                    let held = Some(target);
                    let report = c.untouched(CopyOutcome::Drifted, &head.digest, media_type, held);
                    results[i] = Some(Ok(report));
                }
                Ok(Resolution {
                    plan: Plan::UpToDate { media_type },
                    ..
                }) => {
                    let report =
                        c.untouched(CopyOutcome::AlreadyPresent, &head.digest, media_type, None);
                    results[i] = Some(Ok(report));
                }
                Ok(Resolution {
                    plan: Plan::Retag { manifest },
                    reference,
                    ..
                }) => finishing.push((i, c, reference, manifest)),
                Ok(Resolution {
                    plan: Plan::Copy { target_is_new },
                    reference,
                    ..
                }) => to_copy.push((i, c, reference, target_is_new)),
            }
        }
        let retags = finishing
            .iter()
            .map(|(i, c, reference, manifest)| async move {
                (*i, self.retag(c, reference, manifest.clone()).await)
            });
        let copies = async {
            if to_copy.is_empty() {
                return Vec::new();
            }
            let top = match self.source_top(source, head).instrument(span.clone()).await {
                Ok(top) => top,
                Err(e) => return to_copy.iter().map(|(i, ..)| (*i, Err(e.clone()))).collect(),
            };
            record_top(&span, &top);
            self.copy_tree(&to_copy, top, span.clone()).await
        };
        let (retagged, copied) = tokio::join!(futures_util::future::join_all(retags), copies);
        for (i, result) in retagged.into_iter().chain(copied) {
            results[i] = Some(result);
        }
        finish(results, targets, replaced)
    }

    /// The target holds the manifest by digest: push it under the tag, verify.
    async fn retag(
        &self,
        c: &Copying<'_>,
        reference: &str,
        manifest: Manifest,
    ) -> Result<CopyReport, CopyError> {
        let resolved = c.started.elapsed();
        let tree = Tree::single(manifest);
        let p = self.pushing(c, &tree);
        self.push_indexes_and_top(&p, reference).await?;
        let top = &tree.manifests[0];
        self.verify(c.target, reference, &top.digest).await?;
        Ok(c.counters.report(
            CopyOutcome::Copied,
            top.digest.clone(),
            top.media_type.clone(),
            platforms_of(top)?,
            c.started,
            Phases {
                resolve: resolved,
                blobs: std::time::Duration::ZERO,
                manifests: c.started.elapsed().saturating_sub(resolved),
            },
        ))
    }

    /// Transfer, push, verify, for each target: the tree is read once, while its blobs are
    /// copied (each image manifest hands its blobs over as soon as it is read), and each
    /// target's child manifests go up while its other blobs are still on their way.
    async fn copy_tree(
        &self,
        targets: &[(usize, Copying<'_>, String, bool)],
        top: Manifest,
        resolve_span: tracing::Span,
    ) -> Vec<(usize, Result<CopyReport, CopyError>)> {
        let Some((_, first, _, _)) = targets.first() else {
            return Vec::new();
        };
        let supplies = Supplies::new(targets.len());
        let mut walk_targets = Vec::new();
        let mut listed = Vec::new();
        for (_, c, _, is_new) in targets {
            let (found, rx) = mpsc::unbounded_channel::<Descriptor>();
            walk_targets.push(WalkTarget {
                repo: c.target,
                is_new: *is_new,
                found,
                progress: &c.progress,
            });
            listed.push(rx);
        }
        let (tree_tx, tree_rx) = watch::channel::<Option<Result<Arc<Tree>, CopyError>>>(None);
        let walk = async {
            let tree = Walk {
                engine: self,
                source: first.source,
                targets: walk_targets,
            }
            .run(top)
            .instrument(resolve_span.clone())
            .await;
            drop(resolve_span);
            tree_tx.send_replace(Some(tree.map(Arc::new)));
        };
        let pipelines = targets
            .iter()
            .zip(listed)
            .map(|((i, c, reference, is_new), rx)| {
                let tree = tree_rx.clone();
                let supplies = &supplies;
                async move {
                    let result = self
                        .target_pipeline(c, reference, rx, *is_new, tree, supplies)
                        .await;
                    (*i, result)
                }
            });
        let ((), done) = tokio::join!(walk, futures_util::future::join_all(pipelines));
        done
    }

    /// One target's part of a copy: its blobs, its manifests, the check.
    async fn target_pipeline(
        &self,
        c: &Copying<'_>,
        reference: &str,
        listed: mpsc::UnboundedReceiver<Descriptor>,
        target_is_new: bool,
        mut tree: watch::Receiver<Option<Result<Arc<Tree>, CopyError>>>,
        supplies: &Supplies,
    ) -> Result<CopyReport, CopyError> {
        let (tree, ()) = tokio::try_join!(
            async {
                let walked = tree
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| CopyError::Invalid("the walk ended without a tree".into()))?
                    .clone();
                let tree = walked.unwrap_or_else(|| Err(CopyError::Invalid("no tree".into())))?;
                c.progress.walked();
                self.push_children(&self.pushing(c, &tree)).await?;
                Ok(tree)
            },
            self.transfer_blobs(c, listed, target_is_new, supplies)
        )?;
        let resolved = tree.resolved.saturating_duration_since(c.started);
        let transferred = c.started.elapsed();
        self.push_indexes_and_top(&self.pushing(c, &tree), reference)
            .await?;
        let Some(top) = tree.manifests.last() else {
            return Err(CopyError::Invalid("the source tree is empty".into()));
        };
        self.verify(c.target, reference, &top.digest).await?;
        Ok(c.counters.report(
            CopyOutcome::Copied,
            top.digest.clone(),
            top.media_type.clone(),
            tree.platforms.clone(),
            c.started,
            Phases {
                resolve: resolved,
                blobs: transferred.saturating_sub(resolved),
                manifests: c.started.elapsed().saturating_sub(transferred),
            },
        ))
    }

    /// Copies every blob the walk lists, several at a time, as they arrive.
    async fn transfer_blobs(
        &self,
        c: &Copying<'_>,
        listed: mpsc::UnboundedReceiver<Descriptor>,
        target_is_new: bool,
        supplies: &Supplies,
    ) -> Result<(), CopyError> {
        let listed = stream::unfold(
            listed,
            |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
        );
        listed
            .map(|blob| {
                let supply = supplies.of(&blob.digest);
                self.blob_task(c, blob, target_is_new, supply)
            })
            .buffer_unordered(self.options.blob_concurrency.max(1))
            .try_for_each(|_| async { Ok(()) })
            .await
    }

    fn pushing<'a>(&'a self, c: &'a Copying<'a>, tree: &'a Tree) -> Pushing<'a> {
        Pushing {
            source: c.source,
            target: c.target,
            tree,
            progress: &c.progress,
            counters: &c.counters,
        }
    }

    /// The target must resolve `reference` to `digest`.
    async fn verify(
        &self,
        target: &Repository,
        reference: &str,
        digest: &Digest,
    ) -> Result<(), CopyError> {
        let found = self.client.manifest_digest(target, reference).await?;
        if found.as_ref() != Some(digest) {
            return Err(CopyError::Verify {
                target: format!("{target}:{reference}"),
                found: found.map_or_else(|| "nothing".to_owned(), |d| d.to_string()),
                expected: digest.to_string(),
            });
        }
        Ok(())
    }

    /// One blob's copy in its span, counted in the metrics. Boxed, so that the copy future
    /// made in the transfer stream stays `Send` for spawned workers (rust#102211).
    fn blob_task<'a>(
        &'a self,
        c: &'a Copying<'a>,
        blob: Descriptor,
        target_is_new: bool,
        supply: Option<Arc<Supply>>,
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
                let t = Transfer {
                    source: c.source,
                    target: c.target,
                    blob: &blob,
                    counters: &c.counters,
                    progress: &c.progress,
                    lease: None,
                };
                let outcome = self.copy_blob(&t, target_is_new, supply).await?;
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
}

fn record_top(span: &tracing::Span, top: &Manifest) {
    span.record("digest", tracing::field::display(&top.digest));
    span.record("media_type", top.media_type.as_str());
}
