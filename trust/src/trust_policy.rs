//! What must have signed an image: one of the trusted keys (`--require-signature`), or a
//! keyless identity (`--require-identity`), either being enough; and the judging of one
//! signature against them.

use image_mirror_common::Digest;

use crate::keyless::{CertSignature, Keyless};
use crate::keys::TrustedKeys;
use crate::refusal::Refusal;
use crate::verify::Candidate;

/// The keys and identities an image's signature must come from; empty: none is asked for.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    keys: TrustedKeys,
    keyless: Option<Keyless>,
}

/// Who signed an image that was let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The key's file, or the identity: `subject (issuer …)`.
    pub name: String,
    /// Whether it is a keyless identity (a certificate), not a key.
    pub keyless: bool,
}

impl TrustPolicy {
    /// Signatures verified by one of `keys`, or (when given) carrying an identity `keyless`
    /// accepts.
    pub fn new(keys: TrustedKeys, keyless: Option<Keyless>) -> Self {
        Self { keys, keyless }
    }

    /// Whether any signature is required.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.keyless.is_none()
    }

    /// Who signed `candidate` as a signature of `digest`; else why it is not trusted.
    pub(crate) fn judge(&self, candidate: &Candidate, digest: &Digest) -> Result<Signer, Refusal> {
        if !candidate.names(digest) {
            let named = candidate.named.first().cloned();
            return Err(Refusal::DigestMismatch(
                named.unwrap_or_else(|| "no digest".into()),
            ));
        }
        if let Some(key) = candidate.key(&self.keys) {
            return Ok(Signer {
                name: key.to_owned(),
                keyless: false,
            });
        }
        let (Some(keyless), Some(leaf)) = (&self.keyless, &candidate.leaf) else {
            return Err(Refusal::NoTrustedKey);
        };
        let mut refusal = Refusal::NoTrustedKey;
        for signature in &candidate.signatures {
            let signed = CertSignature {
                message: &candidate.message,
                payload: &candidate.payload,
                signature,
                leaf,
                chain: &candidate.chain,
                promises: &candidate.promises,
            };
            match keyless.verify(&signed) {
                Ok(identity) => {
                    return Ok(Signer {
                        name: identity,
                        keyless: true,
                    })
                }
                Err(why) => refusal = why,
            }
        }
        Err(refusal)
    }
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}
