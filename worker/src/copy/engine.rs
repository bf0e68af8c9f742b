//! The copy engine and how it orchestrates one image to its targets: resolve both ends, walk
//! the tree the targets lack while its blobs are copied (each a [`BlobCopy`]), push manifests
//! children first, verify; then what travels with the image. One engine serves a whole
//! process: connections, the knowledge of where blobs are, the blob flights under way, the
//! fleet, what people watch and the stop signal are shared by all its copies.

use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt, TryStreamExt};
use image_mirror_common::{metrics, Digest, ImageRef, Platforms, Repository};
use image_mirror_queue::coordination::Coordinator;
use image_mirror_queue::QueueError;
use image_mirror_registry::{Descriptor, Manifest, RegistryClient};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::copy::activity::{Activity, Watched};
use crate::copy::attachments::{Along, Attach, AttachOptions, ImageCopier};
use crate::copy::attest::{held_digest, Attested, Attester, Provenance};
use crate::copy::blob::blob_copy::{BlobCopy, BlobOutcome};
use crate::copy::blob::flight::bring;
use crate::copy::blob::saved::SavedUploads;
use crate::copy::blob::tee::{Supplies, Supply};
use crate::copy::compare::{compare, compare_jobs, Compared, Comparison};
use crate::copy::copying::{finish, Copying, TargetOutcome};
use crate::copy::drift::{DriftPolicy, OnDrift};
use crate::copy::error::CopyError;
use crate::copy::fleet::Fleet;
use crate::copy::mounts::MountIndex;
use crate::copy::parts::{CopyAsks, CopyOptions, Parts};
use crate::copy::platforms::{Choice, OnSparseRefused};
use crate::copy::policy::{HookInput, PolicyHook};
use crate::copy::push::Pushing;
use crate::copy::report::{CopyOutcome, CopyReport, Phases};
use crate::copy::resolve::{platforms_of, Plan, Resolution, Resolve, SourceHead};
use crate::copy::stop::{StopSignal, CHECKPOINT_GRACE};
use crate::copy::target_record::TargetRecord;
use crate::copy::walk::{Tree, Walk, WalkTarget};
use image_mirror_trust::TrustPolicy;

/// Copies images; one engine serves a whole process, sharing connections, the knowledge of
/// where blobs are (for mounts), and the blob flights under way.
#[derive(Clone)]
pub struct CopyEngine {
    parts: Parts,
}

/// What the copy of an image (not of what travels with it) is checked with: the policy hook
/// is asked, told who signed it.
pub(crate) struct Gate<'a> {
    signer: Option<&'a str>,
}

/// A blob's copy as the transfer stream holds it.
type BlobTask<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<BlobOutcome, CopyError>> + Send + 'a>,
>;

/// The targets of an image copy, sorted by what their plans ask (see [`CopyEngine::sort`]).
#[derive(Default)]
struct Sorted<'a> {
    /// Each target's outcome, in their order, once known.
    results: Vec<Option<Result<CopyReport, CopyError>>>,
    /// The digest each drifted target held, when the policy overwrites it.
    replaced: Vec<Option<Digest>>,
    /// Targets the tree goes to.
    to_copy: Vec<ToCopy<'a>>,
    /// Targets that only need their tag.
    finishing: Vec<Retag<'a>>,
}

/// Every target's outcome: `e`.
fn every_target_failed(targets: &[ImageRef], e: &CopyError) -> Vec<TargetOutcome> {
    targets
        .iter()
        .map(|t| TargetOutcome::of(t, Err(e.clone())))
        .collect()
}

impl Sorted<'_> {
    /// The targets that would be written (copied or tagged): their index, and as named.
    fn written(&self) -> Vec<(usize, String)> {
        let copied = self
            .to_copy
            .iter()
            .map(|t| (t.index, format!("{}:{}", t.copying.target, t.reference)));
        let tagged = self
            .finishing
            .iter()
            .map(|r| (r.index, format!("{}:{}", r.copying.target, r.reference)));
        copied.chain(tagged).collect()
    }

    /// Every target that would have been written ends with `refused`; the others as known.
    fn refused(mut self, refused: CopyError, targets: &[ImageRef]) -> Vec<TargetOutcome> {
        for (i, _) in self.written() {
            self.results[i] = Some(Err(refused.clone()));
        }
        finish(self.results, targets, self.replaced)
    }
}

/// A target that holds the manifest by digest and only needs its tag.
struct Retag<'a> {
    index: usize,
    copying: Copying<'a>,
    reference: String,
    manifest: Manifest,
}

/// One target of an image copy still to go through transfer and push: its state, the
/// reference it is written under, and whether its repository is new.
struct ToCopy<'a> {
    index: usize,
    copying: Copying<'a>,
    reference: String,
    target_is_new: bool,
}

impl CopyEngine {
    /// An engine over `client` that remembers blob locations for this process only.
    pub fn new(client: RegistryClient, options: CopyOptions) -> Self {
        Self::with_mounts(client, options, MountIndex::in_memory())
    }

    /// An engine over `client` with the given blob location index.
    pub fn with_mounts(client: RegistryClient, options: CopyOptions, mounts: MountIndex) -> Self {
        Self {
            parts: Parts::new(client, options, mounts),
        }
    }

    /// This engine trusting `record` for what target tags hold (see `target_record.rs`): a
    /// target tag recently seen to hold the source digest is not asked again.
    #[must_use]
    pub fn with_target_record(mut self, record: TargetRecord) -> Self {
        self.parts.record = Arc::new(record);
        self
    }

    /// This engine copying what `options` say travels with each image.
    #[must_use]
    pub fn with_attachments(mut self, options: AttachOptions) -> Self {
        self.parts.attach = Arc::new(Attach::new(options, self.parts.attach.trust.clone()));
        self
    }

    /// This engine mirroring only images a cosign signature from `trust`'s keys or identities
    /// verifies.
    #[must_use]
    pub fn with_trust(mut self, trust: TrustPolicy) -> Self {
        self.parts.attach = Arc::new(Attach::new(self.parts.attach.options.clone(), trust));
        self
    }

    /// This engine copying only `platforms` of each index, unless a copy chooses its own.
    #[must_use]
    pub fn with_platforms(mut self, platforms: Option<Platforms>) -> Self {
        self.parts.platforms = platforms;
        self
    }

    /// This engine doing `policy` when a target refuses a sparse index.
    #[must_use]
    pub fn with_on_sparse_refused(mut self, policy: OnSparseRefused) -> Self {
        self.parts.on_sparse_refused = policy;
        self
    }

    /// This engine signing a statement of each image it copies (see `attest.rs`).
    #[must_use]
    pub fn with_attester(mut self, attester: Option<crate::copy::attest::Attester>) -> Self {
        self.parts.attester = attester.map(Arc::new);
        self
    }

    /// This engine asking `hook` before any image is written (see `policy.rs`).
    #[must_use]
    pub fn with_policy_hook(mut self, hook: Option<PolicyHook>) -> Self {
        self.parts.policy = hook.map(Arc::new);
        self
    }

    /// This engine with `policy` for drifted targets (a target tag that holds another
    /// digest than the source's).
    #[must_use]
    pub fn with_drift(mut self, policy: DriftPolicy) -> Self {
        self.parts.drift = Arc::new(policy);
        self
    }

    /// This engine saving where its chunked uploads stand in `saved`, and going on from
    /// there the next time the same blob goes to the same repository.
    #[must_use]
    pub fn with_saved_uploads(mut self, saved: SavedUploads) -> Self {
        self.parts.saved = saved;
        self
    }

    /// This engine stopping its copies at their next checkpoint when `stop` is given (see
    /// `stop.rs`): they end with [`CopyError::Interrupted`].
    #[must_use]
    pub fn with_stop(mut self, stop: StopSignal) -> Self {
        self.parts.stop = stop;
        self
    }

    /// This engine showing its copies in flight in `activity`.
    #[must_use]
    pub fn with_activity(mut self, activity: Arc<Activity>) -> Self {
        self.parts.activity = Some(activity);
        self
    }

    /// This engine as a member of the fleet `coordinator` speaks for: each large blob goes to
    /// a registry once across workers, the others mount it, and an upload a worker left
    /// unfinished is taken over where it stopped (see `fleet.rs`).
    pub async fn join_fleet(mut self, coordinator: Coordinator) -> Result<Self, QueueError> {
        let fleet = Fleet::join(
            coordinator,
            Arc::clone(&self.parts.mounts),
            &self.parts.client,
        );
        self.parts.fleet = Some(fleet.await?);
        Ok(self)
    }

    /// Tells the engine that `repo` holds the blob `digest`: a copy into its registry that
    /// lacks it mounts it from there.
    pub fn blob_is_at(&self, repo: &Repository, digest: &Digest) {
        self.parts.mounts.record(repo, digest);
    }

    /// The registry client the engine uses.
    pub fn client(&self) -> &RegistryClient {
        &self.parts.client
    }

    /// The platforms every copy takes unless a job chooses (all when `None`).
    pub(crate) fn platforms(&self) -> Option<&Platforms> {
        self.parts.platforms.as_ref()
    }

    /// Whether another repository of `repo`'s registry is known to hold `digest` (a copy would
    /// mount it from there).
    pub(crate) fn blob_known_elsewhere(&self, repo: &Repository, digest: &Digest) -> bool {
        self.parts.mounts.source_for(repo, digest).is_some()
    }

    /// Tells the copies under way to stop at their next checkpoint.
    pub fn stop_copies(&self) {
        self.parts.stop.stop();
    }

    /// What a copy would do, reading only: the source digest and whether the target has it.
    pub async fn compare(
        &self,
        source: &ImageRef,
        target: &ImageRef,
    ) -> Result<Comparison, CopyError> {
        compare(
            &self.parts.client,
            source,
            target,
            self.parts.platforms.as_ref(),
        )
        .await
    }

    /// How every target of `jobs` stands against its source, reading only (a dry run).
    pub async fn compare_jobs(&self, jobs: &[image_mirror_common::MirrorJob]) -> Vec<Compared> {
        compare_jobs(&self.parts.client, jobs, self.parts.platforms.as_ref()).await
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
            .map_or_else(|| Err(CopyError::Invalid("no target".into())), |t| t.result)
    }

    /// Copies `source` to every target at once, reading the source once for all of them: its
    /// manifests, and each blob more than one target lacks (downloaded once, its pieces handed
    /// to each; see `blob/tee.rs`), then what travels with it. Each target's outcome is its
    /// own, and names its target.
    pub async fn copy_many(&self, source: &ImageRef, targets: &[ImageRef]) -> Vec<TargetOutcome> {
        self.copy_many_with(source, targets, &CopyAsks::default())
            .await
    }

    /// [`copy_many`](Self::copy_many), with what the copy asks beyond the engine's settings
    /// (a job's own asks: more travelling with the image, its platforms). After a stop, the
    /// copy has the checkpoint grace to reach a checkpoint, then ends as interrupted.
    pub async fn copy_many_with(
        &self,
        source: &ImageRef,
        targets: &[ImageRef],
        asks: &CopyAsks,
    ) -> Vec<TargetOutcome> {
        let interrupted = || {
            targets
                .iter()
                .map(|t| TargetOutcome::of(t, Err(CopyError::Interrupted)))
                .collect()
        };
        if self.parts.stop.is_stopped() {
            return interrupted();
        }
        let copy = self.copy_attached(source, targets, asks);
        let stopped = async {
            self.parts.stop.stopped().await;
            // A chunk in flight has its grace; a little more lets it save where it stands.
            tokio::time::sleep(CHECKPOINT_GRACE * 2).await;
        };
        tokio::select! {
            done = copy => done,
            () = stopped => interrupted(),
        }
    }

    /// The images, then what travels with each that was settled.
    async fn copy_attached(
        &self,
        source: &ImageRef,
        targets: &[ImageRef],
        asks: &CopyAsks,
    ) -> Vec<TargetOutcome> {
        let options = self.parts.attach.options.with(&asks.attach);
        let platforms = asks.platforms.as_ref().or(self.parts.platforms.as_ref());
        let pinned = match self
            .parts
            .attach
            .trust
            .pin(&self.parts.client, source)
            .await
        {
            Ok(pinned) => pinned,
            Err(e) => {
                let e = CopyError::from(e);
                return targets
                    .iter()
                    .map(|t| TargetOutcome::of(t, Err(e.clone())))
                    .collect();
            }
        };
        let source = pinned.source;
        let verified_by = pinned.signer.as_ref().map(|s| s.name.clone());
        let identity_verified = pinned.signer.as_ref().is_some_and(|s| s.keyless);
        let gate = Gate {
            signer: verified_by.as_deref(),
        };
        let mut outcomes = self
            .copy_images(&source, targets, platforms, Some(&gate))
            .await;
        for outcome in &mut outcomes {
            if let Ok(report) = &mut outcome.result {
                report.attached.verified_by.clone_from(&verified_by);
                report.attached.identity_verified = identity_verified;
            }
        }
        let provenance = Provenance {
            signer: verified_by.as_deref(),
            list_revision: asks.list_revision.as_deref(),
        };
        self.attest_all(&source, &mut outcomes, provenance).await;
        if !options.any() {
            return outcomes;
        }
        for outcome in &mut outcomes {
            let Ok(report) = &mut outcome.result else {
                continue;
            };
            if report.outcome == CopyOutcome::Drifted {
                continue;
            }
            let (from, to) = (source.repository(), outcome.target.repository());
            let along = Along {
                client: &self.parts.client,
                fleet: self.parts.fleet.as_deref(),
                copier: self,
                options: &options,
            };
            match self
                .parts
                .attach
                .copy_along(&along, from, to, &report.digest)
                .await
            {
                Ok(attached) => {
                    report.attached.referrers = attached.referrers;
                    report.attached.digest_tags = attached.digest_tags;
                }
                Err(e) => outcome.result = Err(e.into_target_refusal(to)),
            }
        }
        outcomes
    }

    /// The images alone: see [`copy_many`](Self::copy_many).
    pub(crate) async fn copy_images(
        &self,
        source: &ImageRef,
        targets: &[ImageRef],
        platforms: Option<&Platforms>,
        gate: Option<&Gate<'_>>,
    ) -> Vec<TargetOutcome> {
        let span = tracing::info_span!(
            "copy.resolve",
            source = %source,
            digest = tracing::field::Empty,
            media_type = tracing::field::Empty,
        );
        let started = Instant::now();
        let resolve = Resolve {
            client: &self.parts.client,
            drift: &self.parts.drift,
            platforms,
            record: &self.parts.record,
        };
        let (mut head, plans) = match resolve
            .resolve(source, targets)
            .instrument(span.clone())
            .await
        {
            Ok(resolved) => resolved,
            Err(e) => return every_target_failed(targets, &e),
        };
        span.record("digest", tracing::field::display(&head.digest));
        let sorted = self.sort(source, targets, &head, plans, started);
        let allowed = match self
            .ask_policy(gate, source, &mut head, &sorted, platforms)
            .await
        {
            Ok(allowed) => allowed,
            Err(refused) => return sorted.refused(refused, targets),
        };
        let Sorted {
            mut results,
            replaced,
            to_copy,
            finishing,
        } = sorted;
        let retags = finishing.iter().map(|r| async move {
            let retagged = self
                .retag(&r.copying, &r.reference, r.manifest.clone())
                .await;
            (r.index, retagged)
        });
        let copies = async {
            if to_copy.is_empty() {
                return Vec::new();
            }
            let top = match resolve
                .source_top(source, head)
                .instrument(span.clone())
                .await
            {
                Ok(top) => top,
                Err(e) => return to_copy.iter().map(|t| (t.index, Err(e.clone()))).collect(),
            };
            record_top(&span, &top);
            let choice = match Choice::of(&top, platforms) {
                Ok(choice) => choice,
                Err(e) => return to_copy.iter().map(|t| (t.index, Err(e.clone()))).collect(),
            };
            self.copy_tree(&to_copy, top, choice.as_ref(), span.clone())
                .await
        };
        let (retagged, copied) = tokio::join!(futures_util::future::join_all(retags), copies);
        for (i, result) in retagged.into_iter().chain(copied) {
            results[i] = Some(result);
        }
        let mut outcomes = finish(results, targets, replaced);
        self.record_written(source, &outcomes);
        if allowed {
            allowed_by_policy(&mut outcomes);
        }
        outcomes
    }

    /// Records what each target written now holds under its tag (the digest its manifest PUT
    /// was checked against).
    fn record_written(&self, source: &ImageRef, outcomes: &[TargetOutcome]) {
        for outcome in outcomes {
            let Ok(report) = &outcome.result else {
                continue;
            };
            let Some(tag) = outcome.target.tag().or(source.tag()) else {
                continue;
            };
            if report.outcome == CopyOutcome::Copied {
                let held = report
                    .platform_subset
                    .as_ref()
                    .and_then(|s| s.rewritten_digest.as_ref())
                    .unwrap_or(&report.digest);
                self.parts
                    .record
                    .saw(outcome.target.repository(), tag.as_str(), held);
            }
        }
    }

    /// Signs a statement of each image copied now (`--attest`); a target whose statement
    /// could not be stored fails with why.
    async fn attest_all(
        &self,
        source: &ImageRef,
        outcomes: &mut [TargetOutcome],
        provenance: Provenance<'_>,
    ) {
        let Some(attester) = &self.parts.attester else {
            return;
        };
        for outcome in outcomes.iter_mut() {
            let Ok(report) = &outcome.result else {
                continue;
            };
            if report.outcome != CopyOutcome::Copied {
                continue;
            }
            let target = outcome.target.clone();
            let attested = self
                .attest_one(attester, source, &target, report, provenance)
                .await;
            match attested {
                Ok(added) => {
                    let state = if added { "pushed" } else { "present" };
                    image_mirror_common::metrics::ATTESTATIONS.inc(&[state]);
                    if let Ok(report) = &mut outcome.result {
                        report.attached.attestation = Some(state);
                    }
                }
                Err(e) => outcome.result = Err(e),
            }
        }
    }

    /// Attests one copy, one writer at a time for the target digest: under a lock in the
    /// process and the fleet's lease of its `.att` tag, so that copies of one digest at once
    /// leave one statement; whether one was added.
    async fn attest_one(
        &self,
        attester: &Attester,
        source: &ImageRef,
        target: &ImageRef,
        report: &CopyReport,
        provenance: Provenance<'_>,
    ) -> Result<bool, CopyError> {
        let repo = target.repository();
        let key = format!(
            "{repo}:{}.att",
            image_mirror_registry::referrers::fallback_tag(&held_digest(report))
        );
        let work = Box::pin(async {
            let attested = attester
                .attest(&self.parts.client, source, target, report, provenance)
                .await?;
            self.list_attestation(target, attested).await
        });
        self.parts
            .attach
            .as_only_writer(self.parts.fleet.as_deref(), repo.registry(), &key, work)
            .await
    }

    /// Makes a target without the referrers API list the attestation referrer just pushed
    /// (its fallback tag, under the fleet's lease); whether a statement was added.
    async fn list_attestation(
        &self,
        target: &ImageRef,
        attested: Attested,
    ) -> Result<bool, CopyError> {
        let Some(new) = attested.referrer else {
            return Ok(attested.added);
        };
        let options = AttachOptions::default();
        let along = Along {
            client: &self.parts.client,
            fleet: self.parts.fleet.as_deref(),
            copier: self,
            options: &options,
        };
        self.parts
            .attach
            .list_at_target(&along, target.repository(), &new.subject, &[new.referrer])
            .await?;
        Ok(true)
    }

    /// Whether the policy hook was asked and allowed writing what `sorted` would write of
    /// `source` at `head`; its refusal, when it refuses.
    async fn ask_policy(
        &self,
        gate: Option<&Gate<'_>>,
        source: &ImageRef,
        head: &mut SourceHead,
        sorted: &Sorted<'_>,
        platforms: Option<&Platforms>,
    ) -> Result<bool, CopyError> {
        let (Some(hook), Some(gate)) = (&self.parts.policy, gate) else {
            return Ok(false);
        };
        let written = sorted.written();
        if written.is_empty() {
            return Ok(false);
        }
        let input = HookInput {
            source: source.to_string(),
            targets: written.iter().map(|(_, t)| t.clone()).collect(),
            digest: head.digest.to_string(),
            media_type: head.media_type.clone(),
            platforms: platforms.map_or_else(Vec::new, |p| {
                p.to_string().split(',').map(str::to_owned).collect()
            }),
            signer: gate.signer.map(str::to_owned),
            labels: crate::copy::labels::config_labels(&self.parts.client, source, head).await,
        };
        hook.gate(&input).await.map_or(Ok(true), Err)
    }

    /// Each target's plan, sorted: the outcomes already known (a target's error, up to date,
    /// drifted and kept), the targets that only need their tag, and those to copy.
    fn sort<'a>(
        &self,
        source: &'a ImageRef,
        targets: &'a [ImageRef],
        head: &SourceHead,
        plans: Vec<Result<Resolution, CopyError>>,
        started: Instant,
    ) -> Sorted<'a> {
        let mut sorted = Sorted::default();
        for (index, (plan, target)) in plans.into_iter().zip(targets).enumerate() {
            sorted.results.push(None);
            sorted
                .replaced
                .push(plan.as_ref().ok().and_then(|r| r.replaces.clone()));
            let c = Copying::new(source.repository(), target.repository(), started);
            let known = match plan {
                Err(e) => Err(e),
                Ok(Resolution {
                    plan: Plan::Drifted { target },
                    ..
                }) => {
                    let media_type = head.media_type.clone();
                    let held = Some(target);
                    Ok(c.untouched(CopyOutcome::Drifted, &head.digest, media_type, held))
                }
                Ok(Resolution {
                    plan:
                        Plan::UpToDate {
                            media_type,
                            rewritten,
                        },
                    ..
                }) => {
                    let mut report =
                        c.untouched(CopyOutcome::AlreadyPresent, &head.digest, media_type, None);
                    if let Some(rewritten) = rewritten {
                        report.platforms = rewritten.platforms;
                        report.platform_subset = Some(image_mirror_common::PlatformSubset {
                            offered: Vec::new(),
                            absent: Vec::new(),
                            rewritten_digest: Some(rewritten.digest),
                        });
                    }
                    Ok(report)
                }
                Ok(Resolution {
                    plan: Plan::Retag { manifest },
                    reference,
                    ..
                }) => {
                    sorted.finishing.push(Retag {
                        index,
                        copying: c,
                        reference,
                        manifest,
                    });
                    continue;
                }
                Ok(Resolution {
                    plan: Plan::Copy { target_is_new },
                    reference,
                    ..
                }) => {
                    sorted.to_copy.push(ToCopy {
                        index,
                        copying: c.watched(self.watch(source, target)),
                        reference,
                        target_is_new,
                    });
                    continue;
                }
            };
            sorted.results[index] = Some(known);
        }
        sorted
    }

    /// The activity entry of a copy from `source` to `target`, when people watch.
    fn watch(&self, source: &ImageRef, target: &ImageRef) -> Watched {
        match &self.parts.activity {
            Some(activity) => activity.watch(format!("{source} -> {target}")),
            None => Watched::unwatched(),
        }
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
        let p = self.pushing(c, &tree, None);
        p.push_indexes_and_top(reference).await?;
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
        targets: &[ToCopy<'_>],
        top: Manifest,
        choice: Option<&Choice>,
        resolve_span: tracing::Span,
    ) -> Vec<(usize, Result<CopyReport, CopyError>)> {
        let Some(first) = targets.first() else {
            return Vec::new();
        };
        let supplies = Supplies::new(targets.len());
        let mut walk_targets = Vec::new();
        let mut listed = Vec::new();
        for t in targets {
            let (found, rx) = mpsc::unbounded_channel::<Descriptor>();
            walk_targets.push(WalkTarget {
                repo: t.copying.target,
                is_new: t.target_is_new,
                found,
                blob_states: &t.copying.blob_states,
            });
            listed.push(rx);
        }
        let (tree_tx, tree_rx) = watch::channel::<Option<Result<Arc<Tree>, CopyError>>>(None);
        let walk = async {
            let tree = Walk {
                client: &self.parts.client,
                keep: choice.map(|c| &c.keep),
                concurrency: self.parts.options.blob_concurrency,
                source: first.copying.source,
                targets: walk_targets,
            }
            .run(top)
            .instrument(resolve_span.clone())
            .await;
            drop(resolve_span);
            tree_tx.send_replace(Some(tree.map(Arc::new)));
        };
        let pipelines = targets.iter().zip(listed).map(|(t, rx)| {
            let tree = tree_rx.clone();
            let supplies = &supplies;
            async move {
                let done = self.target_pipeline(t, rx, tree, supplies, choice).await;
                (t.index, done)
            }
        });
        let ((), done) = tokio::join!(walk, futures_util::future::join_all(pipelines));
        done
    }

    /// One target's part of a copy: its blobs, its manifests, the check. A target known to
    /// refuse a sparse index, when told to fail then, fails before it is written to.
    async fn target_pipeline(
        &self,
        t: &ToCopy<'_>,
        listed: mpsc::UnboundedReceiver<Descriptor>,
        mut tree: watch::Receiver<Option<Result<Arc<Tree>, CopyError>>>,
        supplies: &Supplies,
        choice: Option<&Choice>,
    ) -> Result<CopyReport, CopyError> {
        let c = &t.copying;
        if let Some(choice) = choice.filter(|c| !c.whole) {
            let registry = c.target.registry();
            if self.parts.on_sparse_refused == OnSparseRefused::Fail
                && self
                    .parts
                    .client
                    .upload_limits()
                    .refuses_sparse_index(registry)
            {
                return Err(CopyError::SparseRefused {
                    target: c.target.to_string(),
                    chosen: choice.chosen.to_string(),
                    detail: "known to refuse them".to_owned(),
                });
            }
        }
        let (tree, ()) = tokio::try_join!(
            async {
                let walked = tree
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| CopyError::Invalid("the walk ended without a tree".into()))?
                    .clone();
                let tree = walked.unwrap_or_else(|| Err(CopyError::Invalid("no tree".into())))?;
                c.blob_states.walked();
                self.pushing(c, &tree, choice).push_children().await?;
                Ok(tree)
            },
            self.transfer_blobs(c, listed, t.target_is_new, supplies)
        )?;
        let resolved = tree.resolved.saturating_duration_since(c.started);
        let transferred = c.started.elapsed();
        let landed = self
            .pushing(c, &tree, choice)
            .push_indexes_and_top(&t.reference)
            .await?;
        let Some(top) = tree.manifests.last() else {
            return Err(CopyError::Invalid("the source tree is empty".into()));
        };
        self.verify(c.target, &t.reference, &landed.digest).await?;
        let platforms = choice.map_or_else(|| tree.platforms.clone(), |c| c.kept.clone());
        let mut report = c.counters.report(
            CopyOutcome::Copied,
            top.digest.clone(),
            top.media_type.clone(),
            platforms,
            c.started,
            Phases {
                resolve: resolved,
                blobs: transferred.saturating_sub(resolved),
                manifests: c.started.elapsed().saturating_sub(transferred),
            },
        );
        report.platform_subset =
            choice.map(|c| c.subset(landed.rewritten.then(|| landed.digest.clone())));
        Ok(report)
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
            .buffer_unordered(self.parts.options.blob_concurrency.max(1))
            .try_for_each(|_| async { Ok(()) })
            .await
    }

    fn pushing<'a>(
        &'a self,
        c: &'a Copying<'a>,
        tree: &'a Tree,
        choice: Option<&'a Choice>,
    ) -> Pushing<'a> {
        Pushing {
            choice,
            parts: &self.parts,
            source: c.source,
            target: c.target,
            tree,
            blob_states: &c.blob_states,
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
        let found = self.parts.client.manifest_digest(target, reference).await?;
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
                let meter = c.watched.blob(blob.size);
                let copy = BlobCopy {
                    parts: &self.parts,
                    source: c.source,
                    target: c.target,
                    blob: &blob,
                    counters: &c.counters,
                    blob_states: &c.blob_states,
                    meter: &meter,
                };
                let outcome = bring(&copy, target_is_new, supply).await?;
                let sent = if outcome == BlobOutcome::Copied {
                    blob.size
                } else {
                    0
                };
                recorded.record("action", outcome.as_str());
                recorded.record("bytes_sent", sent);
                metrics::BLOBS.inc(&[outcome.as_str()]);
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

impl ImageCopier for CopyEngine {
    fn copy_images<'a>(
        &'a self,
        source: &'a ImageRef,
        target: &'a ImageRef,
        overwrite: bool,
    ) -> futures_util::future::BoxFuture<'a, Vec<TargetOutcome>> {
        Box::pin(async move {
            let targets = std::slice::from_ref(target);
            if overwrite {
                let engine = self.clone().with_drift(DriftPolicy {
                    on_drift: OnDrift::Overwrite,
                    backup_tag: None,
                });
                engine.copy_images(source, targets, None, None).await
            } else {
                CopyEngine::copy_images(self, source, targets, None, None).await
            }
        })
    }
}

/// Marks each copy the policy hook allowed.
fn allowed_by_policy(outcomes: &mut [TargetOutcome]) {
    for outcome in outcomes {
        if let Ok(report) = &mut outcome.result {
            report.attached.policy = Some("allow");
        }
    }
}
