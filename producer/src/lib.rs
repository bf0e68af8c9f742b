//! The producer role: turns `images-list` lines, `config.json` rules and manual requests into
//! [`MirrorJob`](image_mirror_common::MirrorJob)s.
//!
//! It owns the tag sources (GitHub releases, the latest release, a registry's tag list), the
//! filters applied to what they find (`versionConstraint`, `versionFilter`, `latest`) and the
//! planning of one job per image, target and tag. It speaks to the queue only through the port
//! in `common`.
