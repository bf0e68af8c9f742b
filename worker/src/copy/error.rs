//! Why a copy failed, and whether another attempt may succeed.

use image_mirror_registry::{ErrorClass, RegistryError};

/// A failed copy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CopyError {
    /// A registry operation failed (after its retries).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The request itself cannot be carried out (bad reference pair, unsupported content).
    #[error("{0}")]
    Invalid(String),
    /// The target repository does not exist, or refuses this client's pushes.
    #[error("{target}: the target repository does not exist or refuses pushes ({detail}); create it, or grant push, and try again")]
    TargetRefused {
        /// The target repository.
        target: String,
        /// What the registry said.
        detail: String,
    },
    /// The target registry refuses writes (`405` to an upload or a manifest push): a registry
    /// in read-only or maintenance mode, or a repository kept read-only.
    #[error("{target}: the registry refuses writes (read-only?): {detail}")]
    ReadOnly {
        /// The target repository.
        target: String,
        /// What the registry said.
        detail: String,
    },
    /// `--require-signature`, `--require-identity`: no cosign signature of the source digest
    /// is from a trusted key or identity. Nothing of the image was written.
    #[error("{image}: not signed by a trusted key or identity ({detail}); not mirrored")]
    Unsigned {
        /// The source image, by digest.
        image: String,
        /// What was found.
        detail: String,
    },
    /// The process is stopping: the copy stopped at a checkpoint (a chunked upload's place
    /// saved for the next run) or before it wrote anything more.
    #[error(
        "interrupted: the copy stopped before it ended (the next run goes on from where it stood)"
    )]
    Interrupted,
    /// `--platforms`: the source index lists none of the chosen platforms. Nothing was
    /// written.
    #[error(
        "none of the chosen platforms ({chosen}) is in the source index, which offers {offered}"
    )]
    NoChosenPlatform {
        /// The platforms chosen.
        chosen: String,
        /// Those the index lists.
        offered: String,
    },
    /// `--on-sparse-refused fail`: the target refuses the source index with only the chosen
    /// platforms present. Nothing but blobs and platform manifests was written; no tag moved.
    #[error("{target}: the registry refuses an index whose other platforms it does not hold ({detail}); the source digest cannot be kept with only {chosen} (--on-sparse-refused rewrite pushes an index of them alone, with a new digest)")]
    SparseRefused {
        /// The target repository.
        target: String,
        /// The platforms chosen.
        chosen: String,
        /// What the registry said.
        detail: String,
    },
    /// `--policy-hook` denied the image (or could not be asked, `--policy-hook-fail closed`).
    /// Nothing of it was written.
    #[error("{image}: denied by the policy hook: {reason}")]
    PolicyDenied {
        /// The source image, by digest.
        image: String,
        /// The hook's reason.
        reason: String,
    },
    /// `--policy-hook` put the image off: tried again after `wait`. Nothing was written.
    #[error("{image}: put off by the policy hook: {reason}")]
    PolicyDeferred {
        /// The source image, by digest.
        image: String,
        /// The hook's reason.
        reason: String,
        /// How long until it is tried again.
        wait: std::time::Duration,
    },
    /// After the copy, the target does not resolve to the source digest.
    #[error("verification failed: {target} resolves to {found}, expected {expected}")]
    Verify {
        /// The target reference.
        target: String,
        /// What it resolved to (or "nothing").
        found: String,
        /// The source digest.
        expected: String,
    },
}

impl CopyError {
    /// Whether a later attempt may succeed, and how soon.
    pub fn error_class(&self) -> ErrorClass {
        match self {
            Self::Registry(e) => e.class(),
            Self::Invalid(_)
            | Self::TargetRefused { .. }
            | Self::ReadOnly { .. }
            | Self::Unsigned { .. }
            | Self::NoChosenPlatform { .. }
            | Self::SparseRefused { .. }
            | Self::PolicyDenied { .. } => ErrorClass::Permanent,
            Self::PolicyDeferred { .. } => ErrorClass::Deferred,
            Self::Verify { .. } | Self::Interrupted => ErrorClass::Transient,
        }
    }

    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        self.error_class() == ErrorClass::Transient
    }

    /// How long until a spent rate limit is expected back, for a deferred copy.
    pub fn deferred_for(&self) -> Option<std::time::Duration> {
        match self {
            Self::Registry(e) => e.deferred_for(),
            Self::PolicyDeferred { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// The registry the failure is about, when it is one registry's.
    pub fn registry(&self) -> &str {
        match self {
            Self::Registry(e) => e.registry(),
            _ => "",
        }
    }

    /// A short stable name of the failure class, for events, reports and metrics.
    pub fn class(&self) -> String {
        match self {
            Self::Registry(e) => e.kind(),
            Self::Invalid(_) => "invalid".into(),
            Self::TargetRefused { .. } | Self::ReadOnly { .. } => "target_refused".into(),
            Self::Verify { .. } => "verify".into(),
            Self::Unsigned { .. } => "unsigned".into(),
            Self::NoChosenPlatform { .. } => "no_chosen_platform".into(),
            Self::SparseRefused { .. } => "sparse_refused".into(),
            Self::PolicyDenied { .. } => "policy_denied".into(),
            Self::PolicyDeferred { .. } => "policy_deferred".into(),
            Self::Interrupted => "interrupted".into(),
        }
    }
}

impl CopyError {
    /// This error as the target's refusal, when it is one: the target registry refused access
    /// to the repository (403, `DENIED`), does not know it (`NAME_UNKNOWN`), or refuses
    /// writes (405). Credentials it refused (401) stay an authentication failure, naming the
    /// credentials consulted.
    pub(crate) fn into_target_refusal(self, target: &image_mirror_common::Repository) -> Self {
        let Self::Registry(e) = &self else {
            return self;
        };
        if e.registry() != target.registry() {
            return self;
        }
        if let RegistryError::Status {
            status: 405,
            operation,
            detail,
            ..
        } = e
        {
            return Self::ReadOnly {
                target: target.to_string(),
                detail: if detail.is_empty() {
                    format!("{operation}: HTTP 405 Method Not Allowed")
                } else {
                    format!("{operation}: HTTP 405: {detail}")
                },
            };
        }
        let detail = match e {
            RegistryError::Auth {
                status: 401,
                message,
                ..
            } if !is_denial(message) => return self,
            RegistryError::Auth { message, .. } => message.clone(),
            RegistryError::NotFound { operation, .. }
                if ["start upload", "mount", "PUT manifest"]
                    .iter()
                    .any(|w| operation.starts_with(w)) =>
            {
                "NAME_UNKNOWN the registry does not know the repository".to_owned()
            }
            RegistryError::Status { status, detail, .. }
                if *status == 404
                    || detail.contains("NAME_UNKNOWN")
                    || detail.contains("DENIED") =>
            {
                detail.clone()
            }
            _ => return self,
        };
        Self::TargetRefused {
            target: target.to_string(),
            detail,
        }
    }
}

/// A 401 that says the repository is denied (Docker Hub's answer for a repository that does
/// not exist or may not be pushed), not that the credentials are wrong.
fn is_denial(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("denied") || lower.contains("insufficient_scope")
}

impl From<image_mirror_trust::TrustError> for CopyError {
    fn from(e: image_mirror_trust::TrustError) -> Self {
        use image_mirror_trust::TrustError;
        match e {
            TrustError::Registry(e) => Self::Registry(e),
            TrustError::Invalid(detail) => Self::Invalid(detail),
            TrustError::Unsigned { image, detail } => Self::Unsigned { image, detail },
        }
    }
}
