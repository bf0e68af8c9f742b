//! Only what trusted keys signed (`--require-signature`): before anything of an image is
//! written, its source digest must carry a cosign signature that one of the given public
//! keys verifies, and that names that digest. Nothing else is asked for than the source
//! registry's own content (no transparency log, no certificate authority).
//!
//! Two forms are read, as cosign writes them:
//! - the legacy tag `sha256-<hex>.sig`: each layer is a *simple signing* payload
//!   (`critical.image.docker-manifest-digest` names the image) and the annotation
//!   `dev.cosignproject.cosign/signature` its signature;
//! - an OCI 1.1 referrer of artifact type `application/vnd.dev.sigstore.bundle.v0.3+json`
//!   (cosign 3): a Sigstore bundle whose DSSE envelope carries an in-toto statement of
//!   predicate type `https://sigstore.dev/cosign/sign/v1` with the image digest as subject;
//!   the signature is over the envelope's pre-authentication encoding.
//!
//! Keys are ECDSA P-256 public keys in PEM (what `cosign generate-key-pair` writes); signatures
//! are ASN.1 DER, over SHA-256. Payloads and bundles are read within [`MAX_PAYLOAD`] bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use image_mirror_common::{Digest, ImageRef, Repository};
use image_mirror_registry::referrers::fallback_tag;
use image_mirror_registry::{Manifest, RegistryClient, RegistryError};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde_json::Value;

use crate::copy::error::CopyError;

/// The largest signature payload or bundle read.
pub const MAX_PAYLOAD: u64 = 1024 * 1024;
/// Signature manifests looked at for one image at most.
const MAX_CANDIDATES: usize = 32;
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type of cosign 3's bundles.
pub const BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

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
    fn verifier(&self, message: &[u8], signature: &[u8]) -> Option<&str> {
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

/// DSSE's pre-authentication encoding of a payload.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Whether a simple signing payload names `digest`.
fn simple_signing_names(payload: &[u8], digest: &Digest) -> bool {
    serde_json::from_slice::<Value>(payload).is_ok_and(|v| {
        v.pointer("/critical/image/docker-manifest-digest")
            .and_then(Value::as_str)
            == Some(digest.as_str())
    })
}

/// Whether an in-toto statement is cosign's signature of `digest`.
fn statement_signs(statement: &[u8], digest: &Digest) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(statement) else {
        return false;
    };
    let is_signature =
        v.get("predicateType").and_then(Value::as_str) == Some(COSIGN_SIGN_PREDICATE);
    let names = v
        .get("subject")
        .and_then(Value::as_array)
        .is_some_and(|subjects| {
            subjects.iter().any(|s| {
                s.pointer(&format!("/digest/{}", digest.algorithm()))
                    .and_then(Value::as_str)
                    == Some(digest.encoded())
            })
        });
    is_signature && names
}

/// The key that verifies a Sigstore bundle as a signature of `digest`.
pub fn verify_bundle<'k>(keys: &'k TrustedKeys, bundle: &[u8], digest: &Digest) -> Option<&'k str> {
    let bundle: Value = serde_json::from_slice(bundle).ok()?;
    let envelope = bundle.get("dsseEnvelope")?;
    let payload_type = envelope.get("payloadType")?.as_str()?;
    let payload = STANDARD.decode(envelope.get("payload")?.as_str()?).ok()?;
    if !statement_signs(&payload, digest) {
        return None;
    }
    let message = pae(payload_type, &payload);
    envelope
        .get("signatures")?
        .as_array()?
        .iter()
        .filter_map(|s| STANDARD.decode(s.get("sig")?.as_str()?).ok())
        .find_map(|sig| keys.verifier(&message, &sig))
}

/// The key that verifies a simple signing payload as a signature of `digest`.
pub fn verify_simple_signing<'k>(
    keys: &'k TrustedKeys,
    payload: &[u8],
    signature_b64: &str,
    digest: &Digest,
) -> Option<&'k str> {
    if !simple_signing_names(payload, digest) {
        return None;
    }
    let signature = STANDARD.decode(signature_b64.trim()).ok()?;
    keys.verifier(payload, &signature)
}

/// A layer of a signature manifest: its digest, size, media type and annotations.
struct Layer {
    digest: Digest,
    size: u64,
    media_type: String,
    signature: Option<String>,
}

fn layers(manifest: &Manifest) -> Vec<Layer> {
    let Ok(body) = serde_json::from_slice::<Value>(&manifest.bytes) else {
        return Vec::new();
    };
    let Some(layers) = body.get("layers").and_then(Value::as_array) else {
        return Vec::new();
    };
    layers
        .iter()
        .filter_map(|l| {
            Some(Layer {
                digest: l.get("digest")?.as_str()?.parse().ok()?,
                size: l.get("size")?.as_u64()?,
                media_type: l.get("mediaType")?.as_str()?.to_owned(),
                signature: l
                    .pointer(&format!(
                        "/annotations/{}",
                        SIGNATURE_ANNOTATION.replace('/', "~1")
                    ))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        })
        .collect()
}

impl TrustedKeys {
    /// With trusted keys: `source` pinned to the digest a trusted key signed (so that what is
    /// copied is what was verified), and that key's name; refused when unsigned. Without
    /// keys: `source` as it is.
    pub(crate) async fn pin(
        &self,
        client: &RegistryClient,
        source: &ImageRef,
    ) -> Result<(ImageRef, Option<String>), CopyError> {
        if self.is_empty() {
            return Ok((source.clone(), None));
        }
        let repo = source.repository();
        let Some(digest) = client.manifest_digest(repo, &source.reference()).await? else {
            // Not there: the copy says so.
            return Ok((source.clone(), None));
        };
        let key = self.require_signature(client, repo, &digest).await?;
        let pinned = match source.tag() {
            Some(tag) => format!("{repo}:{tag}@{digest}"),
            None => format!("{repo}@{digest}"),
        };
        let pinned = pinned
            .parse()
            .map_err(|e| CopyError::Invalid(format!("{e}")))?;
        tracing::debug!(image = %source, key = %key, "signature verified");
        Ok((pinned, Some(key)))
    }

    /// Refuses `digest` of `source` unless a trusted key signed it; the name of that key.
    pub(crate) async fn require_signature(
        &self,
        client: &RegistryClient,
        source: &Repository,
        digest: &Digest,
    ) -> Result<String, CopyError> {
        let keys = self;
        let mut candidates = Vec::new();
        match client
            .get_manifest(source, &format!("{}.sig", fallback_tag(digest)))
            .await
        {
            Ok(m) => candidates.push(m),
            Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let referrers = client.referrers(source, digest).await?;
        for r in referrers.list().iter().take(MAX_CANDIDATES) {
            if r.artifact_type.as_deref() == Some(BUNDLE_TYPE) {
                candidates.push(client.get_manifest(source, r.digest.as_str()).await?);
            }
        }
        for manifest in &candidates {
            if let Some(key) = verified_by(client, source, manifest, digest, keys).await? {
                return Ok(key.to_owned());
            }
        }
        Err(CopyError::Unsigned {
            image: format!("{source}@{digest}"),
            detail: if candidates.is_empty() {
                "no cosign signature found (no .sig tag, no signature referrer)".into()
            } else {
                format!(
                    "{} signature(s) found, none verified by the trusted keys",
                    candidates.len()
                )
            },
        })
    }
}

async fn verified_by<'k>(
    client: &RegistryClient,
    source: &Repository,
    manifest: &Manifest,
    digest: &Digest,
    keys: &'k TrustedKeys,
) -> Result<Option<&'k str>, CopyError> {
    for layer in layers(manifest).into_iter().take(MAX_CANDIDATES) {
        let is_bundle = layer.media_type == BUNDLE_TYPE;
        if !is_bundle && (layer.media_type != SIMPLE_SIGNING || layer.signature.is_none()) {
            continue;
        }
        if layer.size > MAX_PAYLOAD {
            continue;
        }
        let bytes = small_blob(client, source, &layer.digest, layer.size).await?;
        let key = match (&layer.signature, is_bundle) {
            (_, true) => verify_bundle(keys, &bytes, digest),
            (Some(sig), false) => verify_simple_signing(keys, &bytes, sig, digest),
            (None, false) => None,
        };
        if key.is_some() {
            return Ok(key);
        }
    }
    Ok(None)
}

/// A blob of at most [`MAX_PAYLOAD`] bytes, whole, its digest checked.
async fn small_blob(
    client: &RegistryClient,
    repo: &Repository,
    digest: &Digest,
    size: u64,
) -> Result<Bytes, CopyError> {
    let mut download = client.get_blob(repo, digest, 0, size).await?;
    let mut bytes = BytesMut::new();
    while let Some(chunk) = download.chunk().await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > size {
            break;
        }
    }
    let bytes = bytes.freeze();
    if bytes.len() as u64 != size || &Digest::sha256_of(&bytes) != digest {
        return Err(CopyError::Invalid(format!(
            "{repo}@{digest}: the signature blob does not match its descriptor"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pre_authentication_encoding_is_dsse_s() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }

    #[test]
    fn a_statement_must_be_cosign_s_signature_of_that_digest() {
        let d = Digest::sha256_of(b"image");
        let statement = |predicate: &str, hex: &str| {
            serde_json::json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": hex}}],
                "predicateType": predicate,
                "predicate": {},
            })
            .to_string()
        };
        assert!(statement_signs(
            statement(COSIGN_SIGN_PREDICATE, d.encoded()).as_bytes(),
            &d
        ));
        let other = Digest::sha256_of(b"other");
        assert!(!statement_signs(
            statement(COSIGN_SIGN_PREDICATE, other.encoded()).as_bytes(),
            &d
        ));
        // An SBOM attestation of the image is not its signature.
        let sbom = statement("https://spdx.dev/Document", d.encoded());
        assert!(!statement_signs(sbom.as_bytes(), &d));
    }

    #[test]
    fn a_key_that_is_not_p256_pem_is_refused_by_name() {
        let e =
            TrustedKeys::from_pems(&["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])
                .unwrap_err();
        assert!(e.contains("ECDSA P-256"), "{e}");
    }
}
