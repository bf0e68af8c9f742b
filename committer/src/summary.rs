//! What a run came to, from its jobs' events: counts by outcome, bytes sent, and the failures
//! grouped by cause, with one entry per host that could not be reached.

use std::collections::BTreeMap;

use image_mirror_common::{JobEvent, Outcome};

/// The failure class of a host that could not be reached (`unreachable` in events).
const UNREACHABLE: &str = "unreachable";

/// The sums of a run's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Jobs that wrote the target.
    pub copied: usize,
    /// Jobs whose target already held the source digest.
    pub already_present: usize,
    /// Jobs whose target tag held another digest and was kept.
    pub drifted: usize,
    /// Jobs that failed.
    pub failed: usize,
    /// Jobs deferred because a registry's rate limit was spent (not failures).
    pub deferred: usize,
    /// Blob bytes sent to targets.
    pub bytes_sent: u64,
    /// Referrers and digest tags copied with the images.
    pub attached: u64,
    /// Images whose signature a trusted key or identity verified.
    pub signed: usize,
    /// Of those, images whose signer was a keyless identity (`--require-identity`).
    pub identities_verified: usize,
    /// Signed statements of copies pushed (`--attest`; those already present not counted).
    pub attestations_pushed: usize,
    /// The policy hook's decisions (`--policy-hook`): `allow`, `deny`, `defer`.
    pub policy_decisions: BTreeMap<String, usize>,
    /// Failed jobs by failure class (`not_found`, `auth`, `unreachable`, …).
    pub failures_by_class: BTreeMap<String, usize>,
    /// Hosts that could not be reached, each with why (the failure's message) and how many
    /// jobs failed on it, in the order they first failed.
    pub unreachable: Vec<Unreachable>,
}

/// The policy hook's decision on an event's job, when it was asked.
fn policy_decision(e: &JobEvent) -> Option<&str> {
    match e.error.as_ref().map(|f| f.class.as_str()) {
        Some("policy_denied") => Some("deny"),
        Some("policy_deferred") => Some("defer"),
        _ => e.policy.as_deref(),
    }
}

/// A host that could not be reached, as a run saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The failure's message: the host and why (`registry.k8s.io: the host name does not
    /// resolve (is this machine online?)`).
    pub message: String,
    /// Jobs that failed on it.
    pub jobs: usize,
}

impl RunSummary {
    /// Sums `events`.
    pub fn of(events: &[JobEvent]) -> Self {
        let mut s = Self::default();
        for e in events {
            s.bytes_sent += e.bytes_copied;
            s.attached += e.referrers_copied + e.digest_tags_copied;
            s.signed += usize::from(e.signed_by.is_some());
            s.identities_verified += usize::from(e.identity_verified);
            s.attestations_pushed += usize::from(e.attestation.as_deref() == Some("pushed"));
            if let Some(decision) = policy_decision(e) {
                *s.policy_decisions.entry(decision.to_owned()).or_default() += 1;
            }
            match e.outcome {
                Outcome::Copied => s.copied += 1,
                Outcome::AlreadyPresent => s.already_present += 1,
                Outcome::Drifted => s.drifted += 1,
                Outcome::Deferred => s.deferred += 1,
                Outcome::Failed => {
                    s.failed += 1;
                    let (class, message) = e
                        .error
                        .as_ref()
                        .map_or(("unknown", ""), |f| (f.class.as_str(), f.message.as_str()));
                    *s.failures_by_class.entry(class.to_owned()).or_default() += 1;
                    if class == UNREACHABLE {
                        match s.unreachable.iter_mut().find(|u| u.message == message) {
                            Some(u) => u.jobs += 1,
                            None => s.unreachable.push(Unreachable {
                                message: message.to_owned(),
                                jobs: 1,
                            }),
                        }
                    }
                }
            }
        }
        s
    }

    /// `3 unreachable, 1 not_found`, largest first; empty without failures.
    pub fn causes(&self) -> String {
        let mut by: Vec<(&String, &usize)> = self.failures_by_class.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        by.iter()
            .map(|(class, n)| format!("{n} {class}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use image_mirror_common::message::JobFailure;
    use image_mirror_common::MirrorJob;

    use super::*;

    fn failed(tag: &str, class: &str, message: &str) -> JobEvent {
        let job = MirrorJob::new(
            "docker.io/a/b".parse().unwrap(),
            "docker.io/c/d".parse().unwrap(),
            tag.parse().unwrap(),
            false,
            image_mirror_common::Requester::Sync,
        );
        let mut e = JobEvent::for_job(&job, Outcome::Failed);
        e.error = Some(JobFailure {
            class: class.into(),
            message: message.into(),
        });
        e
    }

    #[test]
    fn failures_group_by_cause_and_unreachable_host() {
        let k8s = "registry.k8s.io: the host name does not resolve (is this machine online?)";
        let events = [
            failed("v1", "unreachable", k8s),
            failed("v2", "unreachable", k8s),
            failed("v3", "not_found", "quay.io: GET manifest: not found"),
            failed(
                "v4",
                "unreachable",
                "quay.io: the host name does not resolve",
            ),
        ];
        let s = RunSummary::of(&events);
        assert_eq!(s.failed, 4);
        assert_eq!(s.causes(), "3 unreachable, 1 not_found");
        assert_eq!(s.unreachable.len(), 2);
        assert_eq!(s.unreachable[0].message, k8s);
        assert_eq!(s.unreachable[0].jobs, 2);
    }
}
