//! The key image-mirror signs its attestations with (`--attest KEY_FILE`), read as cosign
//! reads it: cosign's own encrypted format (`ENCRYPTED SIGSTORE PRIVATE KEY` or the older
//! `ENCRYPTED COSIGN PRIVATE KEY`: a PKCS#8 key sealed with NaCl's secretbox under a key scrypt
//! derives from the password, `COSIGN_PASSWORD`), or a plain PKCS#8 PEM (`PRIVATE KEY`). Only
//! ECDSA P-256, what `cosign generate-key-pair` makes; signatures are ASN.1 DER over SHA-256, of
//! a DSSE envelope's pre-authentication encoding, as cosign signs attestations.

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::verify::pae;

/// A signing key; its name is the file it came from.
#[derive(Clone)]
pub struct AttestKey {
    key: SigningKey,
    name: String,
}

impl std::fmt::Debug for AttestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct KdfParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

impl AttestKey {
    /// The key in `path`, opened with `password` when sealed; why not, naming the file.
    pub fn from_file(path: &std::path::Path, password: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the key: {e}", path.display()))?;
        let key = parse(&text, password).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            key,
            name: path.display().to_string(),
        })
    }

    /// The file the key came from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// cosign's hint of the key in a Sigstore bundle: the base64 of the SHA-256 of its public
    /// key's DER.
    pub fn hint(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        let der = self
            .key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let digest = image_mirror_common::Digest::sha256_of(&der);
        base64::engine::general_purpose::STANDARD.encode(crate::roots::hex_bytes(digest.encoded()))
    }

    /// A Sigstore bundle (v0.3) of a DSSE envelope of `payload`, as cosign 3 stores
    /// attestations in a referrer: the key named by its hint, no transparency log entry.
    pub fn bundle(&self, payload_type: &str, payload: &[u8]) -> Value {
        json!({
            "mediaType": crate::verify::BUNDLE_TYPE,
            "verificationMaterial": {"publicKey": {"hint": self.hint()}},
            "dsseEnvelope": self.envelope(payload_type, payload),
        })
    }

    /// A DSSE envelope of `payload` (of `payload_type`) signed with the key.
    pub fn envelope(&self, payload_type: &str, payload: &[u8]) -> Value {
        let signature: Signature = self.key.sign(&pae(payload_type, payload));
        let b64 = base64::engine::general_purpose::STANDARD;
        json!({
            "payloadType": payload_type,
            "payload": b64.encode(payload),
            "signatures": [{"keyid": "", "sig": b64.encode(signature.to_der().as_bytes())}],
        })
    }
}

/// The key of a PEM text: sealed (cosign's format) or PKCS#8.
fn parse(text: &str, password: &str) -> Result<SigningKey, String> {
    let (label, body) = pem_body(text).ok_or("not a PEM private key")?;
    let der = match label.as_str() {
        "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => open(&body, password)?,
        "PRIVATE KEY" => body,
        other => {
            return Err(format!(
                "a {other:?} PEM block, not a cosign or PKCS#8 private key"
            ))
        }
    };
    SigningKey::from_pkcs8_der(&der).map_err(|e| format!("not an ECDSA P-256 PKCS#8 key ({e})"))
}

/// The label and the decoded body of the first PEM block of `text`.
fn pem_body(text: &str) -> Option<(String, Vec<u8>)> {
    let begin = text.find("-----BEGIN ")?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let after = &rest[label_end + 5..];
    let end = after.find("-----END ")?;
    let b64: String = after[..end].split_whitespace().collect();
    let body = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some((label, body))
}

/// Opens cosign's sealed key: scrypt, then NaCl's secretbox.
fn open(sealed: &[u8], password: &str) -> Result<Vec<u8>, String> {
    let sealed: Sealed =
        serde_json::from_slice(sealed).map_err(|e| format!("not cosign's sealed key ({e})"))?;
    if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
        return Err(format!(
            "sealed with {} and {}, not scrypt and nacl/secretbox",
            sealed.kdf.name, sealed.cipher.name
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64.decode(&sealed.kdf.salt).map_err(|e| e.to_string())?;
    let nonce = b64
        .decode(&sealed.cipher.nonce)
        .map_err(|e| e.to_string())?;
    let ciphertext = b64.decode(&sealed.ciphertext).map_err(|e| e.to_string())?;
    let params = &sealed.kdf.params;
    if !params.N.is_power_of_two() || nonce.len() != 24 {
        return Err("a sealed key with impossible parameters".into());
    }
    let log_n = u8::try_from(params.N.trailing_zeros()).map_err(|e| e.to_string())?;
    let scrypt_params =
        scrypt::Params::new(log_n, params.r, params.p, 32).map_err(|e| e.to_string())?;
    let mut key = [0_u8; 32];
    scrypt::scrypt(password.as_bytes(), &salt, &scrypt_params, &mut key)
        .map_err(|e| e.to_string())?;
    let cipher = XSalsa20Poly1305::new(&key.into());
    let nonce: [u8; 24] = nonce
        .try_into()
        .map_err(|_| "a sealed key with impossible parameters".to_owned())?;
    cipher
        .decrypt(&nonce.into(), ciphertext.as_ref())
        .map_err(|_| "cannot open the key: wrong password (COSIGN_PASSWORD)?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_private_key_is_named_as_such() {
        let dir = std::env::temp_dir().join(format!("attest-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cosign.pub");
        std::fs::write(
            &path,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let e = AttestKey::from_file(&path, "").unwrap_err();
        assert!(e.contains("cosign.pub") && e.contains("PUBLIC KEY"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
