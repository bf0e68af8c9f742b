//! The two forms of a cosign signature, verified: a simple signing payload with its
//! signature, and a Sigstore bundle's DSSE envelope.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use image_mirror_common::Digest;
use image_mirror_registry::Manifest;
use serde_json::Value;

use crate::keys::TrustedKeys;

/// The largest signature payload or bundle read.
pub const MAX_PAYLOAD: u64 = 1024 * 1024;
/// Signature manifests looked at for one image at most.
pub(crate) const MAX_CANDIDATES: usize = 32;
pub(crate) const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type of cosign 3's bundles.
pub const BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// DSSE's pre-authentication encoding of a payload.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
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
pub(crate) struct Layer {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) media_type: String,
    pub(crate) signature: Option<String>,
}

pub(crate) fn layers(manifest: &Manifest) -> Vec<Layer> {
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
}
