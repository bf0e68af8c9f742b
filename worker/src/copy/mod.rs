//! The copy engine: one image reference (tag or digest), source to target, byte for byte, in
//! four named steps:
//!
//! 1. [`resolve`]: HEAD both ends; when the target tag has the source digest, stop (already
//!    present, nothing read); when the target holds the digest under another tag, read the
//!    manifest there and push only the tag; else read the top manifest from the source.
//! 2. transfer: walk the manifest tree ([`walk`]: every child the target lacks, each once)
//!    while the blobs the target lacks are copied, each as soon as the manifest listing it has
//!    been read: a blob's copy is one value of its own ([`blob`]: planned, placed, claimed,
//!    started, sent, landed).
//! 3. [`push`]: child manifests by digest, each as soon as its own blobs are in the target and
//!    every blob of the image has matched its digest; nested indexes; the top level by tag
//!    (with only some [`platforms`] chosen: the source's index, sparse, or where the target
//!    refuses that, an index of the chosen platforms alone).
//! 4. verify: the target resolves to the source digest.
//!
//! Then, when asked, what travels with the image ([`attachments`]): its referrers and
//! cosign's digest tags. [`engine`] holds the engine and orchestrates images; what a process's
//! copies share is [`parts`]: [`flights`] (one upload of a blob at a time), [`mounts`] (where
//! blobs are), [`target_record`] (what target tags were seen to hold), [`fleet`] (the workers as one), [`activity`] (what people watch) and [`stop`]
//! (stopping at a checkpoint).
//!
//! This file only names the parts; none of them imports anything from it.

pub mod activity;
mod appender;
mod attachments;
mod attest;
mod blob;
mod blob_states;
mod compare;
mod copying;
mod cost;
mod drift;
mod engine;
mod error;
mod fleet;
mod flights;
mod labels;
mod mounts;
mod parts;
mod platforms;
mod policy;
mod push;
mod report;
mod resolve;
pub mod stop;
mod target_record;
mod walk;

pub use activity::{Activity, Bytes, CopyView};
pub use attachments::{AttachOptions, DIGEST_TAG_SUFFIXES};
pub use attest::{Attester, PREDICATE_TYPE};
pub use blob::saved::SavedUploads;
pub use compare::{Compared, Comparison};
pub use copying::TargetOutcome;
pub use cost::{Cost, TargetCost};
pub use drift::{BackupTag, DriftPolicy, OnDrift};
pub use engine::CopyEngine;
pub use error::CopyError;
pub use mounts::MountIndex;
pub use parts::{CopyAsks, CopyOptions};
pub use platforms::{OnSparseRefused, PLATFORMS_ANNOTATION, SOURCE_DIGEST_ANNOTATION};
pub use policy::{OnHookFailure, PolicyHook};
pub use push::RACE_RETRIES;
pub use report::{Attached, CopyOutcome, CopyReport, Phases};
pub use stop::StopSignal;
pub use target_record::{TargetRecord, DEFAULT_MAX_AGE as TARGET_RECORD_MAX_AGE};
pub use walk::{MAX_DEPTH, MAX_MANIFESTS, MAX_MANIFEST_TOTAL};
