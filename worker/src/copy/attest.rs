//! A signed record of every copy (`--attest KEY_FILE`): once an image is copied and verified,
//! an in-toto statement about its target digest ([`PREDICATE_TYPE`]: the source reference and
//! digest, the target reference and digest, the key that verified the source's signature, the
//! time, the tool and its version, and for a rewritten platform subset both digests) is signed
//! as cosign signs attestations (a DSSE envelope) and stored where `cosign verify-attestation`
//! finds it: a layer of the manifest tagged `sha256-<hex>.att` beside the image, added to those
//! already there; and as cosign 3 stores it, an OCI 1.1 referrer of the target digest holding a
//! Sigstore bundle (listed by a registry's referrers API, or, where it has none, added to the
//! fallback tag's index by the engine, under the fleet's lease). Idempotent: a target whose
//! `.att` or referrers already hold a statement of this type gets no second one.

use bytes::Bytes;
use image_mirror_common::{Digest, ImageRef, Repository};
use image_mirror_registry::referrers::{descriptor_of, Referrer};
use image_mirror_registry::{Manifest, RegistryClient};
use image_mirror_trust::{AttestKey, BUNDLE_TYPE};
use serde_json::{json, Value};

use crate::copy::error::CopyError;
use crate::copy::report::CopyReport;

/// The predicate type of image-mirror's statements.
pub const PREDICATE_TYPE: &str = "https://github.com/example/image-mirror/attestations/mirror/v1";
/// DSSE's payload type of in-toto statements.
const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The media type of a layer holding a DSSE envelope, as cosign stores attestations.
const DSSE_LAYER: &str = "application/vnd.dsse.envelope.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The annotation of a bundle referrer naming its statement's predicate type.
const BUNDLE_PREDICATE: &str = "dev.sigstore.bundle.predicateType";

/// What a statement says of where a copy came from, besides the copy itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Provenance<'a> {
    /// The key or identity that verified the source's signature.
    pub(crate) signer: Option<&'a str>,
    /// The images-list revision the copy was planned from.
    pub(crate) list_revision: Option<&'a str>,
}

/// What attesting one copy did.
#[derive(Debug, Clone)]
pub(crate) struct Attested {
    /// Whether a statement was added (in the `.att` tag, as a referrer, or both).
    pub(crate) added: bool,
    /// The referrer pushed now, which a target without the referrers API must list in its
    /// fallback tag.
    pub(crate) referrer: Option<NewReferrer>,
}

/// A referrer pushed, and the digest it refers to.
#[derive(Debug, Clone)]
pub(crate) struct NewReferrer {
    pub(crate) subject: Digest,
    pub(crate) referrer: Referrer,
}

/// Signs and stores statements of copies.
#[derive(Debug, Clone)]
pub struct Attester {
    key: AttestKey,
}

impl Attester {
    /// An attester signing with `key`.
    pub fn new(key: AttestKey) -> Self {
        Self { key }
    }

    /// Records that `report`'s copy of `source` went to `target`, in the `.att` tag and as a
    /// referrer, where one of this type is not there already.
    pub(crate) async fn attest(
        &self,
        client: &RegistryClient,
        source: &ImageRef,
        target: &ImageRef,
        report: &CopyReport,
        provenance: Provenance<'_>,
    ) -> Result<Attested, CopyError> {
        let repo = target.repository();
        let held = held_digest(report);
        let statement = statement(source, target, &held, report, provenance).to_string();
        let in_tag = self.in_att_tag(client, repo, &held, &statement).await?;
        let referrer = self.as_referrer(client, repo, &held, &statement).await?;
        Ok(Attested {
            added: in_tag || referrer.is_some(),
            referrer: referrer.map(|referrer| NewReferrer {
                subject: held,
                referrer,
            }),
        })
    }

    /// Adds `statement` to the `.att` tag of `held`; whether it did (not when one of this type
    /// is there).
    async fn in_att_tag(
        &self,
        client: &RegistryClient,
        repo: &Repository,
        held: &Digest,
        statement: &str,
    ) -> Result<bool, CopyError> {
        let tag = format!("sha256-{}.att", held.encoded());
        let mut layers = match client.get_manifest(repo, &tag).await {
            Ok(existing) => existing_layers(&existing)?,
            Err(e) if e.kind() == "not_found" => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if layers
            .iter()
            .any(|l| l["annotations"]["predicateType"] == PREDICATE_TYPE)
        {
            return Ok(false);
        }
        let envelope = self.key.envelope(IN_TOTO, statement.as_bytes());
        let envelope = Bytes::from(envelope.to_string().into_bytes());
        let digest = push_blob(client, repo, envelope.clone()).await?;
        layers.push(json!({
            "mediaType": DSSE_LAYER,
            "size": envelope.len(),
            "digest": digest.to_string(),
            "annotations": {
                "dev.cosignproject.cosign/signature": "",
                "predicateType": PREDICATE_TYPE,
            },
        }));
        let manifest = manifest_of(client, repo, &layers).await?;
        client.put_manifest(repo, &tag, &manifest).await?;
        Ok(true)
    }

    /// Pushes `statement` as a bundle referrer of `held`, unless one of this type refers to it
    /// already; the referrer pushed.
    async fn as_referrer(
        &self,
        client: &RegistryClient,
        repo: &Repository,
        held: &Digest,
        statement: &str,
    ) -> Result<Option<Referrer>, CopyError> {
        let listed = client.referrers(repo, held).await?;
        let ours = |r: &Referrer| {
            r.artifact_type.as_deref() == Some(BUNDLE_TYPE)
                && r.descriptor
                    .get("annotations")
                    .and_then(|a| a.get(BUNDLE_PREDICATE))
                    .and_then(Value::as_str)
                    == Some(PREDICATE_TYPE)
        };
        if listed.list().iter().any(ours) {
            return Ok(None);
        }
        let bundle = self.key.bundle(IN_TOTO, statement.as_bytes()).to_string();
        let bundle = Bytes::from(bundle.into_bytes());
        let bundle_digest = push_blob(client, repo, bundle.clone()).await?;
        let empty = Bytes::from_static(b"{}");
        let empty_digest = push_blob(client, repo, empty.clone()).await?;
        let subject = client.get_manifest(repo, held.as_str()).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_TYPE,
            "config": {"mediaType": EMPTY_CONFIG, "size": empty.len(), "digest": empty_digest.to_string()},
            "layers": [{"mediaType": BUNDLE_TYPE, "size": bundle.len(), "digest": bundle_digest.to_string()}],
            "annotations": {
                "dev.sigstore.bundle.content": "dsse-envelope",
                BUNDLE_PREDICATE: PREDICATE_TYPE,
                "org.opencontainers.image.created":
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
            "subject": {"mediaType": subject.media_type, "size": subject.bytes.len(), "digest": held.to_string()},
        });
        let manifest = Manifest::from_bytes(
            Bytes::from(manifest.to_string().into_bytes()),
            Some(OCI_MANIFEST),
        )
        .map_err(CopyError::Invalid)?;
        client
            .put_manifest(repo, manifest.digest.as_str(), &manifest)
            .await?;
        descriptor_of(&manifest)
            .map(Some)
            .map_err(CopyError::Invalid)
    }
}

/// The digest the target holds after `report`'s copy: the source's, or the rewritten index's.
pub(crate) fn held_digest(report: &CopyReport) -> Digest {
    report
        .platform_subset
        .as_ref()
        .and_then(|s| s.rewritten_digest.clone())
        .unwrap_or_else(|| report.digest.clone())
}

/// The statement about `held` at `target`.
fn statement(
    source: &ImageRef,
    target: &ImageRef,
    held: &Digest,
    report: &CopyReport,
    provenance: Provenance<'_>,
) -> Value {
    let mut predicate = json!({
        "source": {"reference": source.to_string(), "digest": report.digest.to_string()},
        "target": {"reference": target.to_string(), "digest": held.to_string()},
        "signer": provenance.signer,
        "mirroredAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "tool": {"name": "image-mirror", "version": env!("CARGO_PKG_VERSION")},
    });
    if let Some(revision) = provenance.list_revision {
        predicate["imagesList"] = json!({"digest": revision});
    }
    if let Some(subset) = report
        .platform_subset
        .as_ref()
        .filter(|s| s.rewritten_digest.is_some())
    {
        predicate["platforms"] = json!({
            "kept": report.platforms,
            "rewrittenFrom": report.digest.to_string(),
            "offered": subset.offered,
        });
    }
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": target.repository().to_string(), "digest": {"sha256": held.encoded()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    })
}

/// The layers of an `.att` manifest already there.
fn existing_layers(manifest: &Manifest) -> Result<Vec<Value>, CopyError> {
    let doc: Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| CopyError::Invalid(format!("the attestations' manifest: {e}")))?;
    Ok(doc["layers"].as_array().cloned().unwrap_or_default())
}

/// The `.att` manifest of `layers`, its config pushed first.
async fn manifest_of(
    client: &RegistryClient,
    repo: &Repository,
    layers: &[Value],
) -> Result<Manifest, CopyError> {
    let diff_ids: Vec<Value> = layers.iter().map(|l| l["digest"].clone()).collect();
    let config = json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Bytes::from(config.to_string().into_bytes());
    let config_digest = push_blob(client, repo, config.clone()).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest.to_string()},
        "layers": layers,
    });
    Manifest::from_bytes(
        Bytes::from(manifest.to_string().into_bytes()),
        Some(OCI_MANIFEST),
    )
    .map_err(CopyError::Invalid)
}

/// Stores `bytes` as a blob of `repo` (when it is not there): its digest.
async fn push_blob(
    client: &RegistryClient,
    repo: &Repository,
    bytes: Bytes,
) -> Result<Digest, CopyError> {
    let digest = Digest::sha256_of(&bytes);
    if client.blob_exists(repo, &digest).await? {
        return Ok(digest);
    }
    let slot = client.upload_slot(repo.registry()).await?;
    let upload = client.start_upload(repo).await?;
    let len = bytes.len() as u64;
    let body = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(bytes)]);
    client
        .put_blob_stream(repo, &upload, &digest, body, len, &slot)
        .await?;
    Ok(digest)
}
