//! The public keys a signature must verify against.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

/// The keys an image's signature must verify against.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<NamedKey>,
}

#[derive(Debug, Clone)]
struct NamedKey {
    name: String,
    key: VerifyingKey,
}

impl TrustedKeys {
    /// Reads each PEM public key file; an unreadable or foreign key names its file.
    pub fn from_files(paths: &[std::path::PathBuf]) -> Result<Self, String> {
        let mut keys = Vec::new();
        for path in paths {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read the key: {e}", path.display()))?;
            keys.push(NamedKey {
                name: path.display().to_string(),
                key: parse_key(&pem).map_err(|e| format!("{}: {e}", path.display()))?,
            });
        }
        Ok(Self { keys })
    }

    /// Keys from PEM texts (for tests and embedding).
    pub fn from_pems(pems: &[&str]) -> Result<Self, String> {
        let keys = pems
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                parse_key(pem).map(|key| NamedKey {
                    name: format!("key {}", i + 1),
                    key,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Whether any key is required.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the key that verifies `signature` over `message`.
    pub(crate) fn verifier(&self, message: &[u8], signature: &[u8]) -> Option<&str> {
        let signature = Signature::from_der(signature).ok()?;
        self.keys
            .iter()
            .find(|k| k.key.verify(message, &signature).is_ok())
            .map(|k| k.name.as_str())
    }
}

fn parse_key(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("not an ECDSA P-256 public key in PEM ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_is_not_p256_pem_is_refused_by_name() {
        let e =
            TrustedKeys::from_pems(&["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])
                .unwrap_err();
        assert!(e.contains("ECDSA P-256"), "{e}");
    }
}
