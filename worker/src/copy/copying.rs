//! The state one copy's steps share (the source and target repositories, its counters and
//! progress, when it began), and the reports it ends with.

use std::time::Instant;

use image_mirror_common::{ImageRef, Repository};

use crate::copy::progress::Progress;
use crate::copy::report::Counters;
use crate::copy::{CopyError, CopyOutcome, CopyReport, Phases};

/// The state one copy's steps share.
pub(super) struct Copying<'a> {
    pub(super) source: &'a Repository,
    pub(super) target: &'a Repository,
    pub(super) counters: Counters,
    pub(super) progress: Progress,
    pub(super) started: Instant,
}

impl<'a> Copying<'a> {
    pub(super) fn new(source: &'a Repository, target: &'a Repository, started: Instant) -> Self {
        Self {
            source,
            target,
            counters: Counters::default(),
            progress: Progress::new(),
            started,
        }
    }
}

impl Copying<'_> {
    /// The report of a target left as it was: up to date, or drifted and kept (`held` is
    /// what its tag holds).
    pub(super) fn untouched(
        &self,
        outcome: CopyOutcome,
        digest: &image_mirror_common::Digest,
        media_type: Option<String>,
        held: Option<image_mirror_common::Digest>,
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

/// Each target's result, in order: a refusal of the target named as such, and the digest an
/// overwritten drifted target held.
pub(super) fn finish(
    results: Vec<Option<Result<CopyReport, CopyError>>>,
    targets: &[ImageRef],
    replaced: Vec<Option<image_mirror_common::Digest>>,
) -> Vec<Result<CopyReport, CopyError>> {
    results
        .into_iter()
        .zip(targets)
        .zip(replaced)
        .map(|((r, target), replaced)| {
            r.unwrap_or_else(|| Err(CopyError::Invalid("target not copied".into())))
                .map(|mut report| {
                    if replaced.is_some() {
                        report.target_digest = replaced;
                    }
                    report
                })
                .map_err(|e| e.into_target_refusal(target.repository()))
        })
        .collect()
}
