//! The producer role: turns `images-list` lines, `config.json` rules and manual requests into
//! [`MirrorJob`](image_mirror_common::MirrorJob)s.
//!
//! It owns the planning of one job per image and tag, to every target ([`jobs`] applies the
//! target overrides, [`sync`] plans a whole images-list), tag discovery
//! ([`discover`]: the tag sources, charts rendered by helm ([`helm`]), and the [`versions`]
//! filters applied to what they find),
//! where a new tag goes ([`targets`]), the checks of a manual request ([`add_tag`]), and which
//! targets lack their tag ([`missing`], one tag list per target repository), and the publish
//! step ([`publish`]: a trace per job, confirmed), and the loop that repeats a pass on an
//! interval ([`schedule`], `run_producer`). It speaks to the queue only through the
//! port of `image-mirror-queue`.

pub mod add_tag;
pub mod check;
pub mod discover;
pub mod helm;
pub mod jobs;
pub mod missing;
pub mod publish;
pub mod schedule;
pub mod sync;
pub mod targets;
pub mod versions;

pub use check::{
    added_since, conflicts, removed_since, source_tags, Conflict, SourceTag, TargetRepo,
    TargetRepos,
};
pub use discover::{discover, jobs_of, KeyReport, Sources};
pub use helm::{Helm, HelmError};
pub use jobs::{AttachRules, TargetOverrides};
pub use missing::{only_missing, Missing};
pub use publish::{job_message, publish};
pub use schedule::run_producer;
pub use sync::plan_sync;
pub use targets::{target_for, NewImages, TargetError};
