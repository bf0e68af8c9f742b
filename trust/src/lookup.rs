//! A digest's signatures at its registry: the `.sig` tag and the bundle referrers, read
//! within bounds, until one is trusted; when none is, why each was not.

use bytes::{Bytes, BytesMut};
use image_mirror_common::{Digest, ImageRef, Repository};
use image_mirror_registry::referrers::fallback_tag;
use image_mirror_registry::{Manifest, RegistryClient, RegistryError};

use crate::error::TrustError;
use crate::refusal::Refusal;
use crate::trust_policy::{Signer, TrustPolicy};
use crate::verify::{layers, Candidate, BUNDLE_TYPE, MAX_CANDIDATES, MAX_PAYLOAD, SIMPLE_SIGNING};

/// A source to copy, pinned to the digest a trusted signer signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The source, by the verified digest (its tag kept), or as given when nothing is required.
    pub source: ImageRef,
    /// Who signed it.
    pub signer: Option<Signer>,
}

impl TrustPolicy {
    /// With a requirement: `source` pinned to the digest a trusted signer signed (so that what
    /// is copied is what was verified), and who that was; refused when unsigned. Without one:
    /// `source` as it is.
    pub async fn pin(
        &self,
        client: &RegistryClient,
        source: &ImageRef,
    ) -> Result<Pinned, TrustError> {
        if self.is_empty() {
            return Ok(Pinned {
                source: source.clone(),
                signer: None,
            });
        }
        let repo = source.repository();
        let Some(digest) = client.manifest_digest(repo, &source.reference()).await? else {
            // Not there: the copy says so.
            return Ok(Pinned {
                source: source.clone(),
                signer: None,
            });
        };
        let signer = self.require_signature(client, repo, &digest).await?;
        let pinned = match source.tag() {
            Some(tag) => format!("{repo}:{tag}@{digest}"),
            None => format!("{repo}@{digest}"),
        };
        let pinned = pinned
            .parse()
            .map_err(|e| TrustError::Invalid(format!("{e}")))?;
        tracing::debug!(image = %source, signer = %signer, "signature verified");
        Ok(Pinned {
            source: pinned,
            signer: Some(signer),
        })
    }

    /// Refuses `digest` of `source` unless a trusted signer signed it; who did.
    pub async fn require_signature(
        &self,
        client: &RegistryClient,
        source: &Repository,
        digest: &Digest,
    ) -> Result<Signer, TrustError> {
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
        let mut refusals: Vec<Refusal> = Vec::new();
        for manifest in &candidates {
            match judged(self, client, source, manifest, digest).await? {
                Ok(signer) => return Ok(signer),
                Err(why) => {
                    for r in why {
                        if !refusals.contains(&r) {
                            refusals.push(r);
                        }
                    }
                }
            }
        }
        Err(TrustError::Unsigned {
            image: format!("{source}@{digest}"),
            detail: if candidates.is_empty() {
                "no cosign signature found (no .sig tag, no signature referrer)".into()
            } else {
                let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
                format!(
                    "{} signature(s) found, none verified: {}",
                    candidates.len(),
                    if reasons.is_empty() {
                        "no signature in them".to_owned()
                    } else {
                        reasons.join("; ")
                    }
                )
            },
        })
    }
}

/// Who signed one of `manifest`'s signatures of `digest`; else why each was refused.
async fn judged(
    policy: &TrustPolicy,
    client: &RegistryClient,
    source: &Repository,
    manifest: &Manifest,
    digest: &Digest,
) -> Result<Result<Signer, Vec<Refusal>>, TrustError> {
    let mut refusals = Vec::new();
    for layer in layers(manifest).into_iter().take(MAX_CANDIDATES) {
        let is_bundle = layer.media_type == BUNDLE_TYPE;
        let is_signed_payload =
            layer.media_type == SIMPLE_SIGNING && layer.notes.signature.is_some();
        if !(is_bundle || is_signed_payload) || layer.size > MAX_PAYLOAD {
            continue;
        }
        let bytes = small_blob(client, source, &layer.digest, layer.size).await?;
        let candidate = if is_bundle {
            Candidate::from_bundle(&bytes)
        } else {
            Candidate::from_simple_signing(&bytes, &layer.notes)
        };
        let Some(candidate) = candidate else {
            continue;
        };
        match policy.judge(&candidate, digest) {
            Ok(signer) => return Ok(Ok(signer)),
            Err(why) => refusals.push(why),
        }
    }
    Ok(Err(refusals))
}

/// A blob of at most [`MAX_PAYLOAD`] bytes, whole, its digest checked.
async fn small_blob(
    client: &RegistryClient,
    repo: &Repository,
    digest: &Digest,
    size: u64,
) -> Result<Bytes, TrustError> {
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
        return Err(TrustError::Invalid(format!(
            "{repo}@{digest}: the signature blob does not match its descriptor"
        )));
    }
    Ok(bytes)
}
