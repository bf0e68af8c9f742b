//! The messages that cross the queue: [`MirrorJob`] (producer to worker) and [`JobEvent`]
//! (worker to committer). JSON bodies with a `schema` version; a reader refuses a version it
//! does not know rather than guess.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::images_list::Entry;
use crate::platform::{PlatformSubset, Platforms};
use crate::reference::{ImageRef, Repository, Tag};

/// The message schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a message body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by a version of the schema this build does not know.
    #[error("message schema {found} is not supported (this build reads {SCHEMA_VERSION})")]
    UnsupportedSchema {
        /// The version the message carries.
        found: u32,
    },
}

/// Which part of the system asked for a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Requester {
    /// A line already in images-list (`producer sync`).
    Sync,
    /// A new tag found by the config.json rule with this key.
    Discover(String),
    /// A tag requested by hand (`add-tag`).
    AddTag,
}

impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sync => f.write_str("sync"),
            Self::Discover(key) => write!(f, "discover:{key}"),
            Self::AddTag => f.write_str("add-tag"),
        }
    }
}

impl FromStr for Requester {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Self::Sync),
            "add-tag" => Ok(Self::AddTag),
            _ => match s.strip_prefix("discover:") {
                Some(key) if !key.is_empty() => Ok(Self::Discover(key.to_owned())),
                _ => Err(format!("unknown origin {s:?}")),
            },
        }
    }
}

impl Serialize for Requester {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Requester {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One unit of work: mirror `source:tag` to `target:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorJob {
    /// Message schema version.
    pub schema: u32,
    /// Deterministic id: the same source, target and tag always give the same id. Also the
    /// AMQP `message_id`.
    pub id: String,
    /// Full source repository, e.g. `docker.io/library/traefik`.
    pub source: Repository,
    /// Full target repository.
    pub target: Repository,
    /// The tag, the same at both ends.
    pub tag: Tag,
    /// Whether the committer should add the line to images-list.
    pub record: bool,
    /// The target images-list names, when `--dest-registry`/`--dest-org` sent the copy
    /// elsewhere: the line to record keeps the listed target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_target: Option<Repository>,
    /// More targets of the same copy (several `--dest-registry` values): the source is read
    /// once for all of them. Each target's outcome is its own event, under the id of
    /// `source`, that target and `tag`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_to: Vec<Repository>,
    /// Who asked.
    pub origin: Requester,
    /// When it was asked.
    pub requested_at: DateTime<Utc>,
    /// Copy the image's referrers too (a config.json rule's `referrers`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub referrers: bool,
    /// Copy cosign's digest tags too (a config.json rule's `digestTags`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub digest_tags: bool,
    /// Only these platforms of an index (a config.json rule's `platforms`, else the
    /// command's `--platforms`); every platform when absent, unless the worker was told
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Platforms>,
    /// The revision of the images-list the job was planned from (the SHA-256 digest of its
    /// bytes, as read), when it was; named in the attestation of the copy (`--attest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_revision: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

/// `source:tag -> target:tag` in the short forms images-list uses: how a job is named in
/// output and logs.
pub fn describe(source: &Repository, target: &Repository, tag: &Tag) -> String {
    format!("{}:{tag} -> {}:{tag}", source.short(), target.short())
}

/// The images-list line of a job: its listed target when overrides sent the copy elsewhere.
fn listed_entry(
    source: &Repository,
    target: &Repository,
    listed: Option<&Repository>,
    tag: &Tag,
) -> Entry {
    Entry {
        source: source.clone(),
        target: listed.unwrap_or(target).clone(),
        tag: tag.clone(),
    }
}

/// The deterministic id of the job that mirrors `source:tag` to `target:tag`: the first 128 bits
/// of a sha256 over the three full names, in hex.
pub fn job_id(source: &Repository, target: &Repository, tag: &Tag) -> String {
    let mut h = Sha256::new();
    h.update(source.to_string());
    h.update([0]);
    h.update(target.to_string());
    h.update([0]);
    h.update(tag.as_str());
    let full = Digest::from_sha256_bytes(&h.finalize());
    full.encoded()[..32].to_owned()
}

impl MirrorJob {
    /// `source:tag -> target:tag`, short forms.
    pub fn describe(&self) -> String {
        describe(&self.source, &self.target, &self.tag)
    }

    /// A job for `source:tag -> target:tag`, requested now.
    pub fn new(
        source: Repository,
        target: Repository,
        tag: Tag,
        record: bool,
        origin: Requester,
    ) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            id: job_id(&source, &target, &tag),
            source,
            target,
            tag,
            record,
            listed_target: None,
            also_to: Vec::new(),
            origin,
            requested_at: Utc::now(),
            referrers: false,
            digest_tags: false,
            platforms: None,
            list_revision: None,
        }
    }

    /// Every target, the first one first.
    pub fn targets(&self) -> Vec<Repository> {
        std::iter::once(self.target.clone())
            .chain(self.also_to.iter().cloned())
            .collect()
    }

    /// The same copy to `targets` (the first is the job's target, and names its id); `None`
    /// without any.
    pub fn with_targets(&self, targets: &[Repository]) -> Option<Self> {
        let (first, rest) = targets.split_first()?;
        Some(Self {
            id: job_id(&self.source, first, &self.tag),
            target: first.clone(),
            also_to: rest.to_vec(),
            ..self.clone()
        })
    }

    /// The job of one target alone, as its event names it.
    pub fn for_target(&self, target: &Repository) -> Self {
        Self {
            id: job_id(&self.source, target, &self.tag),
            target: target.clone(),
            also_to: Vec::new(),
            ..self.clone()
        }
    }

    /// The ids of the events this job ends with, one per target.
    pub fn event_ids(&self) -> Vec<String> {
        self.targets()
            .iter()
            .map(|t| job_id(&self.source, t, &self.tag))
            .collect()
    }

    /// The same job, noting that images-list names `listed` as its target (kept only when it
    /// differs from where the copy goes).
    #[must_use]
    pub fn listed_as(mut self, listed: &Repository) -> Self {
        self.listed_target = (listed != &self.target).then(|| listed.clone());
        self
    }

    /// The images-list line this job stands for.
    pub fn entry(&self) -> Entry {
        listed_entry(
            &self.source,
            &self.target,
            self.listed_target.as_ref(),
            &self.tag,
        )
    }

    /// The source image at the job's tag.
    pub fn source_ref(&self) -> ImageRef {
        self.source.at_tag(self.tag.clone())
    }

    /// The target image at the job's tag.
    pub fn target_ref(&self) -> ImageRef {
        self.target.at_tag(self.tag.clone())
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and a timestamp cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a JSON body, refusing unknown schema versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        check_schema(bytes)?;
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The image was copied.
    Copied,
    /// The target already had the source digest; nothing was written.
    AlreadyPresent,
    /// The target tag holds another digest than the source's, and was kept (never overwritten
    /// by accident); `target_digest` says what it holds.
    Drifted,
    /// The job failed for good.
    Failed,
    /// A registry's rate limit was spent: the job waits for the quota (a worker keeps it in a
    /// delay queue; a one-off run reports it and ends).
    Deferred,
}

impl Outcome {
    /// The name used in routing keys and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Copied => "copied",
            Self::AlreadyPresent => "already_present",
            Self::Drifted => "drifted",
            Self::Failed => "failed",
            Self::Deferred => "deferred",
        }
    }
}

/// Why a job failed: a class that says what kind of failure it was, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// Such as `not_found`, `auth`, `digest_mismatch`, `transient_exhausted`.
    pub class: String,
    /// What happened, without secrets.
    pub message: String,
}

/// The result of one job, published when the job ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEvent {
    /// Message schema version.
    pub schema: u32,
    /// The job's id.
    pub job_id: String,
    /// The job's source.
    pub source: Repository,
    /// The job's target.
    pub target: Repository,
    /// The job's tag.
    pub tag: Tag,
    /// The job's `record` flag.
    pub record: bool,
    /// The job's listed target, when it differs from `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_target: Option<Repository>,
    /// The job's origin.
    pub origin: Requester,
    /// When the job was requested.
    pub requested_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// The top-level digest mirrored (absent when the source could not be resolved).
    pub digest: Option<Digest>,
    /// What the target tag held instead: kept when `drifted`, replaced when a drifted target
    /// was overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_digest: Option<Digest>,
    /// Platforms of the image (`linux/amd64`, `windows/amd64:10.0.17763.1`), empty for a
    /// single-platform manifest whose config was not read.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// When only some platforms were chosen: what the source offered, what it lacked, and
    /// the digest of the index the target holds when it took a rewritten one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_subset: Option<PlatformSubset>,
    /// Blob bytes sent to the target.
    pub bytes_copied: u64,
    /// Blobs whose bytes were sent.
    pub blobs_copied: u64,
    /// Blobs mounted from another repository of the target registry.
    pub blobs_mounted: u64,
    /// Blobs the target already had.
    pub blobs_skipped: u64,
    /// Delivery attempts, this one included.
    pub attempts: u32,
    /// Time spent on the last attempt.
    pub duration_ms: u64,
    /// Of that, reading the source and asking about the target, in milliseconds.
    #[serde(default)]
    pub resolve_ms: u64,
    /// Of that, checking, mounting and sending blobs, in milliseconds.
    #[serde(default)]
    pub blobs_ms: u64,
    /// Of that, pushing manifests and verifying, in milliseconds.
    #[serde(default)]
    pub manifests_ms: u64,
    /// Referrers (signatures, attestations, SBOMs) copied with the image (`--referrers`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub referrers_copied: u64,
    /// cosign digest tags copied with the image (`--digest-tags`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub digest_tags_copied: u64,
    /// Who signed the image, verified: the trusted key (`--require-signature`) or the
    /// keyless identity (`--require-identity`: `subject (issuer …)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Whether `signed_by` is a keyless identity, not a key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub identity_verified: bool,
    /// This copy's signed statement (`--attest`): `pushed`, or `present` when the target
    /// already held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// The policy hook's decision that let the copy through (`--policy-hook`): `allow`. A
    /// deny or defer is the failure class `policy_denied` or `policy_deferred`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Set when `outcome` is `failed`.
    pub error: Option<JobFailure>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl JobEvent {
    /// Whether the event's line belongs in images-list: a job to record that ended with its
    /// target holding the source digest.
    pub fn is_to_record(&self) -> bool {
        self.record && matches!(self.outcome, Outcome::Copied | Outcome::AlreadyPresent)
    }

    /// `source:tag -> target:tag` of the event's job, short forms.
    pub fn describe(&self) -> String {
        describe(&self.source, &self.target, &self.tag)
    }

    /// The images-list line the event's job stands for.
    pub fn entry(&self) -> Entry {
        listed_entry(
            &self.source,
            &self.target,
            self.listed_target.as_ref(),
            &self.tag,
        )
    }

    /// An event for `job` with the given outcome and every counter at zero.
    pub fn for_job(job: &MirrorJob, outcome: Outcome) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            job_id: job.id.clone(),
            source: job.source.clone(),
            target: job.target.clone(),
            tag: job.tag.clone(),
            record: job.record,
            listed_target: job.listed_target.clone(),
            origin: job.origin.clone(),
            requested_at: job.requested_at,
            outcome,
            digest: None,
            target_digest: None,
            platforms: Vec::new(),
            platform_subset: None,
            bytes_copied: 0,
            blobs_copied: 0,
            blobs_mounted: 0,
            blobs_skipped: 0,
            attempts: 1,
            duration_ms: 0,
            resolve_ms: 0,
            blobs_ms: 0,
            manifests_ms: 0,
            referrers_copied: 0,
            digest_tags_copied: 0,
            signed_by: None,
            identity_verified: false,
            attestation: None,
            policy: None,
            error: None,
        }
    }

    /// The AMQP routing key: `job.<outcome>`.
    pub fn routing_key(&self) -> String {
        format!("job.{}", self.outcome.as_str())
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a JSON body, refusing unknown schema versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        check_schema(bytes)?;
        Ok(serde_json::from_slice(bytes)?)
    }
}

fn check_schema(bytes: &[u8]) -> Result<(), MessageError> {
    #[derive(Deserialize)]
    struct Versioned {
        schema: u32,
    }
    let v: Versioned = serde_json::from_slice(bytes)?;
    if v.schema == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(MessageError::UnsupportedSchema { found: v.schema })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> MirrorJob {
        MirrorJob::new(
            "traefik".parse().unwrap(),
            "rancher/mirrored-library-traefik".parse().unwrap(),
            "v3.0.0".parse().unwrap(),
            true,
            Requester::Discover("traefik3".into()),
        )
    }

    #[test]
    fn job_ids_are_deterministic_and_distinct() {
        let a = job();
        let b = job();
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        let other = job_id(&a.source, &a.target, &"v3.0.1".parse().unwrap());
        assert_ne!(a.id, other);
        // The same image written short or full is the same job.
        let full = job_id(
            &"docker.io/library/traefik".parse().unwrap(),
            &a.target,
            &a.tag,
        );
        assert_eq!(a.id, full);
    }

    #[test]
    fn job_round_trips_with_full_names() {
        let j = job();
        let json: serde_json::Value = serde_json::from_slice(&j.to_json()).unwrap();
        assert_eq!(json["schema"], 1);
        assert_eq!(json["source"], "docker.io/library/traefik");
        assert_eq!(json["target"], "docker.io/rancher/mirrored-library-traefik");
        assert_eq!(json["origin"], "discover:traefik3");
        assert_eq!(MirrorJob::from_json(&j.to_json()).unwrap(), j);
    }

    #[test]
    fn event_round_trips_and_routes_by_outcome() {
        let mut e = JobEvent::for_job(&job(), Outcome::AlreadyPresent);
        e.digest = Some(Digest::sha256_of(b"x"));
        assert_eq!(e.routing_key(), "job.already_present");
        let json: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(json["outcome"], "already_present");
        assert_eq!(JobEvent::from_json(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn unknown_schema_and_bad_bodies_are_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&job().to_json()).unwrap();
        v["schema"] = 2.into();
        let bytes = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            MirrorJob::from_json(&bytes),
            Err(MessageError::UnsupportedSchema { found: 2 })
        ));
        v["schema"] = 1.into();
        v["tag"] = "bad tag".into();
        let bytes = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            MirrorJob::from_json(&bytes),
            Err(MessageError::Malformed(_))
        ));
        assert!(MirrorJob::from_json(b"{").is_err());
    }

    #[test]
    fn origins_parse() {
        for o in ["sync", "add-tag", "discover:etcd"] {
            assert_eq!(o.parse::<Requester>().unwrap().to_string(), o);
        }
        assert!("discover:".parse::<Requester>().is_err());
        assert!("cron".parse::<Requester>().is_err());
    }
}
