//! The domain of image-mirror and what every role shares.
//!
//! This crate owns the vocabulary the other crates speak: image references ([`ImageRef`],
//! [`Repository`], [`Tag`], [`Digest`]), the `images-list` file and its GNU `sort -V` order, the
//! `config.json` discovery rules, and the messages that cross the queue ([`MirrorJob`],
//! [`JobEvent`]). It performs no network I/O of its own in these modules; the only file it
//! writes is an images-list, atomically.

pub mod atomic_file;
pub mod config;
pub mod digest;
pub mod dockerhub;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod github;
pub mod helm_charts;
pub mod images_list;
pub mod message;
pub mod metrics;
pub mod queue;
pub mod reference;
pub mod registry;
pub mod secret;
pub mod trace_context;
pub mod version_sort;

pub use config::{Config, ConfigError, Rule, VersionSource};
pub use digest::Digest;
pub use images_list::{Entry, ImagesList, ImagesListError};
pub use message::{JobEvent, MessageError, MirrorJob, Origin, Outcome};
pub use reference::{ImageRef, Repository, Tag};
