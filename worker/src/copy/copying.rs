//! One image copy to one target: the state its steps share (the source and target
//! repositories, its counters, blob states and activity entry, when it began), and the outcome
//! it ends with, named by its target.

use std::time::Instant;

use image_mirror_common::{Digest, ImageRef, Repository};

use crate::copy::activity::Watched;
use crate::copy::blob_states::BlobStates;
use crate::copy::error::CopyError;
use crate::copy::report::{CopyOutcome, CopyReport, Counters, Phases};

/// One target's outcome of a copy: results are named by their target, never matched by
/// position.
#[derive(Debug)]
pub struct TargetOutcome {
    /// The target, as asked.
    pub target: ImageRef,
    /// What the copy to it came to.
    pub result: Result<CopyReport, CopyError>,
}

impl TargetOutcome {
    pub(crate) fn of(target: &ImageRef, result: Result<CopyReport, CopyError>) -> Self {
        Self {
            target: target.clone(),
            result,
        }
    }
}

/// The state one copy's steps share.
pub(crate) struct Copying<'a> {
    pub(crate) source: &'a Repository,
    pub(crate) target: &'a Repository,
    pub(crate) counters: Counters,
    pub(crate) blob_states: BlobStates,
    /// Its place in what people watch.
    pub(crate) watched: Watched,
    pub(crate) started: Instant,
}

impl<'a> Copying<'a> {
    pub(crate) fn new(source: &'a Repository, target: &'a Repository, started: Instant) -> Self {
        Self {
            source,
            target,
            counters: Counters::default(),
            blob_states: BlobStates::new(),
            watched: Watched::unwatched(),
            started,
        }
    }

    /// This copy, watched through `watched`.
    pub(crate) fn watched(mut self, watched: Watched) -> Self {
        self.watched = watched;
        self
    }

    /// The report of a target left as it was: up to date, or drifted and kept (`held` is
    /// what its tag holds).
    pub(crate) fn untouched(
        &self,
        outcome: CopyOutcome,
        digest: &Digest,
        media_type: Option<String>,
        held: Option<Digest>,
    ) -> CopyReport {
        let mut report = self.counters.report(
            outcome,
            digest.clone(),
            media_type.unwrap_or_default(),
            Vec::new(),
            self.started,
            Phases {
                resolve: self.started.elapsed(),
                ..Phases::default()
            },
        );
        report.target_digest = held;
        report
    }
}

/// Each target's outcome: a refusal of the target named as such, and the digest an
/// overwritten drifted target held. `results` and `replaced` are in the order of `targets`.
pub(crate) fn finish(
    results: Vec<Option<Result<CopyReport, CopyError>>>,
    targets: &[ImageRef],
    replaced: Vec<Option<Digest>>,
) -> Vec<TargetOutcome> {
    results
        .into_iter()
        .zip(targets)
        .zip(replaced)
        .map(|((r, target), replaced)| {
            let result = r
                .unwrap_or_else(|| Err(CopyError::Invalid("target not copied".into())))
                .map(|mut report| {
                    if replaced.is_some() {
                        report.target_digest = replaced;
                    }
                    report
                })
                .map_err(|e| e.into_target_refusal(target.repository()));
            TargetOutcome::of(target, result)
        })
        .collect()
}
