//! What a copy would do, reading only (`run --dry-run`): the source's digest and how the
//! target's tag stands against it, from one `HEAD` at each end, asked together (and, with only
//! some platforms chosen, a read of the target's index when it is not the source's: the
//! index cut from it is up to date).

use futures_util::{stream, StreamExt};
use image_mirror_common::{Digest, ImageRef, MirrorJob, Platforms};
use image_mirror_registry::{RegistryClient, RegistryError};

use crate::copy::error::CopyError;
use crate::copy::platforms::is_rewrite_of;

/// Targets compared at once.
const AT_ONCE: usize = 16;

/// How one job's target stands (`run --dry-run`).
#[derive(Debug)]
pub struct Compared {
    /// The job, for that one target.
    pub job: MirrorJob,
    /// How its target stands against its source.
    pub result: Result<Comparison, CopyError>,
}

/// How every target of `jobs` stands against its source, [`AT_ONCE`] at a time, in the jobs'
/// order.
pub(crate) async fn compare_jobs(
    client: &RegistryClient,
    jobs: &[MirrorJob],
    platforms: Option<&Platforms>,
) -> Vec<Compared> {
    let each_target: Vec<MirrorJob> = jobs
        .iter()
        .flat_map(|j| j.targets().into_iter().map(|t| j.for_target(&t)))
        .collect();
    stream::iter(each_target)
        .map(|job| async move {
            let chosen = job.platforms.as_ref().or(platforms);
            let result = compare(client, &job.source_ref(), &job.target_ref(), chosen).await;
            Compared { job, result }
        })
        .buffered(AT_ONCE)
        .collect()
        .await
}

/// How a target stands against its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The target has the source digest.
    UpToDate {
        /// The digest at both ends.
        digest: Digest,
    },
    /// The target tag does not exist.
    Missing {
        /// The source digest.
        source: Digest,
    },
    /// The target tag points elsewhere.
    Differs {
        /// The source digest.
        source: Digest,
        /// What the target holds.
        target: Digest,
    },
}

/// What a copy would do, reading only: the source digest and whether the target has it.
pub(crate) async fn compare(
    client: &RegistryClient,
    source: &ImageRef,
    target: &ImageRef,
    platforms: Option<&Platforms>,
) -> Result<Comparison, CopyError> {
    let reference = target
        .tag()
        .or(source.tag())
        .map(ToString::to_string)
        .unwrap_or_else(|| source.reference());
    let source_reference = source.reference();
    let (src, dst) = tokio::join!(
        client.manifest_digest(source.repository(), &source_reference),
        client.manifest_digest(target.repository(), &reference)
    );
    let src = src?.ok_or_else(|| {
        CopyError::Registry(RegistryError::NotFound {
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
        Some(d) => match platforms {
            Some(chosen) => {
                let held = client.get_manifest(target.repository(), d.as_str()).await?;
                if is_rewrite_of(&held, &src, chosen) {
                    Comparison::UpToDate { digest: src }
                } else {
                    Comparison::Differs {
                        source: src,
                        target: d,
                    }
                }
            }
            None => Comparison::Differs {
                source: src,
                target: d,
            },
        },
    })
}
