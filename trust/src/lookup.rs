//! A digest's signatures at its registry: the `.sig` tag and the bundle referrers, read
//! within bounds, until a trusted key verifies one.

use bytes::{Bytes, BytesMut};
use image_mirror_common::{Digest, ImageRef, Repository};
use image_mirror_registry::referrers::fallback_tag;
use image_mirror_registry::{Manifest, RegistryClient, RegistryError};

use crate::error::TrustError;
use crate::keys::TrustedKeys;
use crate::verify::{
    layers, verify_bundle, verify_simple_signing, BUNDLE_TYPE, MAX_CANDIDATES, MAX_PAYLOAD,
    SIMPLE_SIGNING,
};

/// A source to copy, pinned to the digest a trusted key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The source, by the verified digest (its tag kept), or as given when no key is required.
    pub source: ImageRef,
    /// The name of the key that verified it.
    pub key: Option<String>,
}

impl TrustedKeys {
    /// With trusted keys: `source` pinned to the digest a trusted key signed (so that what is
    /// copied is what was verified), and that key's name; refused when unsigned. Without
    /// keys: `source` as it is.
    pub async fn pin(
        &self,
        client: &RegistryClient,
        source: &ImageRef,
    ) -> Result<Pinned, TrustError> {
        if self.is_empty() {
            return Ok(Pinned {
                source: source.clone(),
                key: None,
            });
        }
        let repo = source.repository();
        let Some(digest) = client.manifest_digest(repo, &source.reference()).await? else {
            // Not there: the copy says so.
            return Ok(Pinned {
                source: source.clone(),
                key: None,
            });
        };
        let key = self.require_signature(client, repo, &digest).await?;
        let pinned = match source.tag() {
            Some(tag) => format!("{repo}:{tag}@{digest}"),
            None => format!("{repo}@{digest}"),
        };
        let pinned = pinned
            .parse()
            .map_err(|e| TrustError::Invalid(format!("{e}")))?;
        tracing::debug!(image = %source, key = %key, "signature verified");
        Ok(Pinned {
            source: pinned,
            key: Some(key),
        })
    }

    /// Refuses `digest` of `source` unless a trusted key signed it; the name of that key.
    pub async fn require_signature(
        &self,
        client: &RegistryClient,
        source: &Repository,
        digest: &Digest,
    ) -> Result<String, TrustError> {
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
        Err(TrustError::Unsigned {
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
) -> Result<Option<&'k str>, TrustError> {
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
