//! The producer role: turns `images-list` lines, `config.json` rules and manual requests into
//! [`MirrorJob`](image_mirror_common::MirrorJob)s.
//!
//! It owns the planning of one job per image, target and tag ([`sync`]), and, to come, the tag
//! sources (GitHub releases, the latest release, a registry's tag list) and the filters applied
//! to what they find. It speaks to the queue only through the port in `common`.

pub mod sync;

pub use sync::{plan_sync, TargetOverrides};
