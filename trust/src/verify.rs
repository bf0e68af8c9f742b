//! The two forms of a cosign signature, read: a simple signing payload with its layer's
//! signature (and certificate) annotations, and a Sigstore bundle's DSSE envelope (and
//! verification material).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use image_mirror_common::Digest;
use image_mirror_registry::Manifest;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use crate::keys::TrustedKeys;
use crate::roots::{pem_chain_to_der, pem_to_der};
use crate::tlog::Promise;

/// The largest signature payload or bundle read.
pub const MAX_PAYLOAD: u64 = 1024 * 1024;
/// Signature manifests looked at for one image at most.
pub(crate) const MAX_CANDIDATES: usize = 32;
pub(crate) const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
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

/// The digests a simple signing payload names.
fn simple_signing_names(payload: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| {
            v.pointer("/critical/image/docker-manifest-digest")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .into_iter()
        .collect()
}

/// The digests an in-toto statement names, when it is cosign's signature (not an attestation).
fn statement_names(statement: &[u8]) -> Option<Vec<String>> {
    let v = serde_json::from_slice::<Value>(statement).ok()?;
    if v.get("predicateType").and_then(Value::as_str) != Some(COSIGN_SIGN_PREDICATE) {
        return None;
    }
    let subjects = v.get("subject").and_then(Value::as_array)?;
    Some(
        subjects
            .iter()
            .filter_map(|s| s.get("digest").and_then(Value::as_object))
            .flat_map(|d| {
                d.iter()
                    .filter_map(|(alg, hex)| Some(format!("{alg}:{}", hex.as_str()?)))
                    .collect::<Vec<_>>()
            })
            .collect(),
    )
}

/// One cosign signature of an image, read from either form: what was signed, the signatures,
/// the digests it names, and the certificate and log promises it carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Candidate {
    /// The bytes signed: a simple signing payload, or a DSSE envelope's encoding.
    pub(crate) message: Vec<u8>,
    /// The payload itself.
    pub(crate) payload: Vec<u8>,
    /// ASN.1 DER signatures over `message`.
    pub(crate) signatures: Vec<Vec<u8>>,
    /// The image digests the payload names.
    pub(crate) named: Vec<String>,
    /// The signing certificate, DER, when it carries one.
    pub(crate) leaf: Option<Vec<u8>>,
    /// Certificates between it and a root.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// Transparency log promises.
    pub(crate) promises: Vec<Promise>,
}

impl Candidate {
    /// A Sigstore bundle that is cosign's signature (`None`: malformed, or an attestation).
    pub(crate) fn from_bundle(bundle: &[u8]) -> Option<Self> {
        let bundle: Value = serde_json::from_slice(bundle).ok()?;
        let envelope = bundle.get("dsseEnvelope")?;
        let payload_type = envelope.get("payloadType")?.as_str()?;
        let payload = STANDARD.decode(envelope.get("payload")?.as_str()?).ok()?;
        let named = statement_names(&payload)?;
        let signatures = envelope
            .get("signatures")?
            .as_array()?
            .iter()
            .filter_map(|s| STANDARD.decode(s.get("sig")?.as_str()?).ok())
            .collect();
        let material = bundle.get("verificationMaterial");
        let mut certificates: Vec<CertificateDer<'static>> = material
            .and_then(|m| {
                m.pointer("/x509CertificateChain/certificates")
                    .and_then(Value::as_array)
                    .cloned()
                    .or_else(|| Some(vec![m.get("certificate")?.clone()]))
            })
            .into_iter()
            .flatten()
            .filter_map(|c| STANDARD.decode(c.get("rawBytes")?.as_str()?).ok())
            .map(CertificateDer::from)
            .collect();
        let leaf = (!certificates.is_empty()).then(|| certificates.remove(0).to_vec());
        Some(Self {
            message: pae(payload_type, &payload),
            payload,
            signatures,
            named,
            leaf,
            chain: certificates,
            promises: material.map(Promise::from_bundle).unwrap_or_default(),
        })
    }

    /// A simple signing payload with its layer's signature and certificate annotations.
    pub(crate) fn from_simple_signing(payload: &[u8], notes: &LayerNotes) -> Option<Self> {
        let signature = STANDARD.decode(notes.signature.as_deref()?.trim()).ok()?;
        let leaf = notes
            .certificate
            .as_deref()
            .and_then(|p| pem_to_der(p).ok());
        let chain = notes
            .chain
            .as_deref()
            .and_then(|p| pem_chain_to_der(p).ok())
            .unwrap_or_default();
        Some(Self {
            message: payload.to_vec(),
            payload: payload.to_vec(),
            signatures: vec![signature],
            named: simple_signing_names(payload),
            leaf,
            chain,
            promises: notes
                .bundle
                .as_deref()
                .and_then(Promise::from_annotation)
                .into_iter()
                .collect(),
        })
    }

    /// Whether it names `digest`.
    pub(crate) fn names(&self, digest: &Digest) -> bool {
        self.named.iter().any(|n| n == digest.as_str())
    }

    /// The name of the key of `keys` that verifies it.
    pub(crate) fn key<'k>(&self, keys: &'k TrustedKeys) -> Option<&'k str> {
        self.signatures
            .iter()
            .find_map(|sig| keys.verifier(&self.message, sig))
    }
}

/// The key that verifies a Sigstore bundle as a signature of `digest`.
pub fn verify_bundle<'k>(keys: &'k TrustedKeys, bundle: &[u8], digest: &Digest) -> Option<&'k str> {
    Candidate::from_bundle(bundle)
        .filter(|c| c.names(digest))?
        .key(keys)
}

/// The key that verifies a simple signing payload as a signature of `digest`.
pub fn verify_simple_signing<'k>(
    keys: &'k TrustedKeys,
    payload: &[u8],
    signature_b64: &str,
    digest: &Digest,
) -> Option<&'k str> {
    let notes = LayerNotes {
        signature: Some(signature_b64.to_owned()),
        ..LayerNotes::default()
    };
    Candidate::from_simple_signing(payload, &notes)
        .filter(|c| c.names(digest))?
        .key(keys)
}

/// cosign's annotations of a `.sig` layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerNotes {
    pub(crate) signature: Option<String>,
    pub(crate) certificate: Option<String>,
    pub(crate) chain: Option<String>,
    pub(crate) bundle: Option<String>,
}

/// A layer of a signature manifest: its digest, size, media type and annotations.
pub(crate) struct Layer {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) media_type: String,
    pub(crate) notes: LayerNotes,
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
            let note = |key: &str| {
                l.get("annotations")
                    .and_then(|a| a.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            Some(Layer {
                digest: l.get("digest")?.as_str()?.parse().ok()?,
                size: l.get("size")?.as_u64()?,
                media_type: l.get("mediaType")?.as_str()?.to_owned(),
                notes: LayerNotes {
                    signature: note(SIGNATURE_ANNOTATION),
                    certificate: note(CERTIFICATE_ANNOTATION),
                    chain: note(CHAIN_ANNOTATION),
                    bundle: note(BUNDLE_ANNOTATION),
                },
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
    fn a_statement_must_be_cosign_s_signature_and_names_its_digests() {
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
        assert_eq!(
            statement_names(statement(COSIGN_SIGN_PREDICATE, d.encoded()).as_bytes()),
            Some(vec![d.to_string()])
        );
        // An SBOM attestation of the image is not its signature.
        let sbom = statement("https://spdx.dev/Document", d.encoded());
        assert_eq!(statement_names(sbom.as_bytes()), None);
    }
}
