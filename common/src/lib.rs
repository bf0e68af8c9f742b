//! The domain of image-mirror and what every role shares.
//!
//! This crate owns the vocabulary the other crates speak: image references ([`ImageRef`],
//! [`Repository`], [`Tag`], [`Digest`]), the `images-list` file and its GNU `sort -V` order, the
//! `config.json` discovery rules, the platforms a user mirrors ([`Platforms`]), and the messages that cross the queue ([`MirrorJob`],
//! [`JobEvent`]), what a registry taught a fleet of its uploads ([`lesson::Lesson`]), and the
//! names of secrets and metrics. It performs no network I/O; the only file it writes is an
//! images-list, atomically. The protocols live in crates of their own beside it: the
//! registry's (`image-mirror-registry`), the queue's (`image-mirror-queue`) and GitHub's
//! (`image-mirror-github`).

pub mod atomic_file;
pub mod config;
pub mod digest;
pub mod duration;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod helm_charts;
pub mod images_list;
pub mod lesson;
pub mod link_header;
pub mod message;
pub mod metrics;
pub mod platform;
pub mod rate;
pub mod reference;
pub mod retry;
pub mod secret;
pub mod version_sort;

pub use config::{Config, ConfigError, Rule, VersionSource};
pub use digest::Digest;
pub use images_list::{Entry, ImagesList, ImagesListError};
pub use message::{JobEvent, MessageError, MirrorJob, Outcome, Requester};
pub use platform::{Platform, PlatformError, PlatformSubset, Platforms};
pub use reference::{ImageRef, Repository, Tag};
