//! Why one signature did not let an image through.

/// Why a signature is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It signs another image.
    DigestMismatch(String),
    /// No trusted key verifies it (and no identity is asked for, or it has no certificate).
    NoTrustedKey,
    /// It does not verify with its certificate's key.
    BadSignature,
    /// Its certificate or signature cannot be read.
    Unreadable(String),
    /// A transparency log's promise is required and absent or wrong.
    Tlog(String),
    /// Its certificate does not chain to the trusted root.
    UntrustedChain(String),
    /// Its certificate (or authority) was not valid when it was signed.
    Expired(String),
    /// Its certificate names an identity no policy accepts.
    WrongIdentity(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DigestMismatch(named) => {
                write!(f, "digest mismatch: it signs {named}, not this digest")
            }
            Self::NoTrustedKey => f.write_str("no trusted key verifies it"),
            Self::BadSignature => {
                f.write_str("bad signature: it does not verify with its certificate's key")
            }
            Self::Unreadable(why) => write!(f, "unreadable: {why}"),
            Self::Tlog(why) => write!(f, "transparency log: {why}"),
            Self::UntrustedChain(why) => write!(
                f,
                "untrusted chain: its certificate does not chain to the trusted root ({why})"
            ),
            Self::Expired(at) => write!(
                f,
                "expired: its certificate was not valid when it was signed, at {at}"
            ),
            Self::WrongIdentity(who) => {
                write!(f, "wrong identity: {who} matches no --require-identity")
            }
        }
    }
}
