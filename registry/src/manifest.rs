//! Manifests, byte for byte: read raw, digest checked, kind told from the media type (or the
//! body when the registry does not say), never re-serialised. The manifest model of
//! `oci-client` is used to read the descriptors inside.

use bytes::Bytes;
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use crate::body::MAX_EMPTY_BODY;
use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::scope::Scope;
use crate::transport::Call;
use image_mirror_common::digest::Digest;
use image_mirror_common::reference::Repository;

/// The largest manifest accepted (as registries limit them too).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The media types asked for, schema1 included so that it can be refused by name.
const ACCEPTED: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1, \
    application/vnd.docker.distribution.manifest.v1+json;q=0.1";

/// Whether a manifest lists other manifests or describes one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI index or a Docker manifest list.
    Index,
    /// An OCI image manifest or a Docker schema2 manifest (or an artifact manifest).
    Image,
}

/// A reference from one piece of content to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// `os/arch[/variant][:os.version]` for index entries that name a platform.
    pub platform: Option<String>,
    /// For an index entry that is an attestation manifest (BuildKit's
    /// `vnd.docker.reference.type: attestation-manifest`), the manifest it attests.
    pub attests: Option<Digest>,
}

/// A manifest as the registry holds it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The exact bytes.
    pub bytes: Bytes,
    /// Their digest.
    pub digest: Digest,
    /// The media type it is stored with.
    pub media_type: String,
}

impl Manifest {
    /// A manifest from raw bytes, with the media type the registry gave (`None` or a generic
    /// JSON type: read from the body). Refuses schema1 and what is not a manifest.
    pub fn from_bytes(bytes: Bytes, content_type: Option<&str>) -> Result<Self, String> {
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
        let declared = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned())
            .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
        let media_type = match (declared, body.get("mediaType").and_then(|m| m.as_str())) {
            (Some(t), _) => t,
            (None, Some(t)) => t.to_owned(),
            (None, None) if body.get("manifests").is_some() => {
                OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned()
            }
            (None, None) => OCI_IMAGE_MEDIA_TYPE.to_owned(),
        };
        if media_type == SCHEMA1
            || media_type == SCHEMA1_SIGNED
            || body.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1)
        {
            return Err(
                "Docker schema1 manifests are not supported (a deprecated format that \
                        cannot be copied without changing its digest); ask the publisher for a \
                        schema2 or OCI image"
                    .to_owned(),
            );
        }
        let digest = Digest::sha256_of(&bytes);
        Ok(Self {
            bytes,
            digest,
            media_type,
        })
    }

    /// Index or single image.
    pub fn kind(&self) -> ManifestKind {
        match self.media_type.as_str() {
            OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE => ManifestKind::Index,
            _ => ManifestKind::Image,
        }
    }

    /// The manifests an index lists, with their platforms.
    pub fn children(&self) -> Result<Vec<Descriptor>, String> {
        let index: OciImageIndex =
            serde_json::from_slice(&self.bytes).map_err(|e| format!("invalid index: {e}"))?;
        index.manifests.iter().map(index_entry).collect()
    }

    /// The blobs an image manifest refers to: its config, then its layers.
    pub fn blobs(&self) -> Result<Vec<Descriptor>, String> {
        let manifest: OciImageManifest = serde_json::from_slice(&self.bytes)
            .map_err(|e| format!("invalid image manifest: {e}"))?;
        std::iter::once(&manifest.config)
            .chain(manifest.layers.iter())
            .map(blob_descriptor)
            .collect()
    }
}

fn size_of(size: i64) -> Result<u64, String> {
    u64::try_from(size).map_err(|_| format!("negative size {size}"))
}

fn blob_descriptor(d: &OciDescriptor) -> Result<Descriptor, String> {
    Ok(Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.parse().map_err(|e| format!("{e}"))?,
        size: size_of(d.size)?,
        platform: None,
        attests: None,
    })
}

fn index_entry(e: &ImageIndexEntry) -> Result<Descriptor, String> {
    let platform = e.platform.as_ref().map(|p| {
        let mut s = format!("{}/{}", p.os, p.architecture);
        if let Some(v) = &p.variant {
            s.push('/');
            s.push_str(v);
        }
        if let Some(v) = &p.os_version {
            s.push(':');
            s.push_str(v);
        }
        s
    });
    let annotation = |key: &str| e.annotations.as_ref().and_then(|a| a.get(key));
    let attests = match annotation("vnd.docker.reference.type") {
        Some(t) if t == "attestation-manifest" => annotation("vnd.docker.reference.digest")
            .map(|d| d.parse().map_err(|e| format!("{e}")))
            .transpose()?,
        _ => None,
    };
    Ok(Descriptor {
        media_type: e.media_type.clone(),
        digest: e.digest.parse().map_err(|e| format!("{e}"))?,
        size: size_of(e.size)?,
        platform,
        attests,
    })
}

/// Whether a media type names a manifest (as opposed to a blob).
pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_IMAGE_INDEX_MEDIA_TYPE
            | IMAGE_MANIFEST_LIST_MEDIA_TYPE
            | OCI_IMAGE_MEDIA_TYPE
            | IMAGE_MANIFEST_MEDIA_TYPE
    )
}

impl RegistryClient {
    /// Reads the manifest `reference` (tag or digest) of `repo`: raw bytes, at most 4 MiB,
    /// digest checked against a digest reference and against `Docker-Content-Digest`.
    pub async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        self.operation(self.get_manifest_once(repo, reference))
            .await
    }

    async fn get_manifest_once(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let registry = repo.registry();
        let operation = format!("GET manifest {}:{reference}", repo.path());
        let url = self.repo_url(repo, &format!("manifests/{reference}"))?;
        let scope = Scope::pull(repo.path());
        let call = Call::new(registry, &scope, &operation, Method::GET, url)
            .header(ACCEPT, ACCEPTED)
            .pull();
        let reply = self.fetch(call, MAX_MANIFEST_BYTES).await?;
        if reply.status != StatusCode::OK {
            return Err(reply.into_error(registry, &operation));
        }
        let header_digest = reply
            .header("docker-content-digest")
            .and_then(|v| v.parse::<Digest>().ok());
        let content_type = reply.header(CONTENT_TYPE.as_str()).map(str::to_owned);
        let manifest = Manifest::from_bytes(reply.body, content_type.as_deref())
            .map_err(|m| protocol(registry, &operation, m))?;
        let expected = match reference.parse::<Digest>() {
            Ok(d) => Some(d),
            Err(_) => header_digest.filter(|d| d.algorithm() == "sha256"),
        };
        if let Some(expected) = expected {
            if expected != manifest.digest {
                return Err(RegistryError::DigestMismatch {
                    registry: registry.to_owned(),
                    what: format!("manifest {}:{reference}", repo.path()),
                    expected,
                    actual: manifest.digest,
                });
            }
        }
        Ok(manifest)
    }

    /// The digest `reference` resolves to in `repo`, or `None` when it does not exist: a
    /// HEAD (free where GETs are counted as pulls), with a GET only when the registry's
    /// answer carries no digest.
    pub async fn manifest_digest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        Ok(match self.head_manifest(repo, reference).await? {
            ManifestHead::Missing => None,
            ManifestHead::Found { digest, .. } => Some(digest),
            ManifestHead::Read(m) => Some(m.digest),
        })
    }

    /// What `reference` is in `repo`, asked with a HEAD (the same `Accept` list as a GET);
    /// when the answer carries no digest, the manifest is read instead and handed back, so
    /// that it is not read twice.
    pub async fn head_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<ManifestHead, RegistryError> {
        let found = self
            .operation(self.head_manifest_once(repo, reference))
            .await?;
        match found {
            Head::Missing => Ok(ManifestHead::Missing),
            Head::Digest { digest, media_type } => Ok(ManifestHead::Found { digest, media_type }),
            Head::Present => match self.get_manifest(repo, reference).await {
                Ok(m) => Ok(ManifestHead::Read(m)),
                Err(RegistryError::NotFound { .. }) => Ok(ManifestHead::Missing),
                Err(e) => Err(e),
            },
        }
    }

    async fn head_manifest_once(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Head, RegistryError> {
        let registry = repo.registry();
        let operation = format!("HEAD manifest {}:{reference}", repo.path());
        let url = self.repo_url(repo, &format!("manifests/{reference}"))?;
        let scope = Scope::pull(repo.path());
        let call =
            Call::new(registry, &scope, &operation, Method::HEAD, url).header(ACCEPT, ACCEPTED);
        let reply = self.fetch(call, MAX_EMPTY_BODY).await?;
        match reply.status {
            StatusCode::OK => {
                let media_type = reply
                    .header(CONTENT_TYPE.as_str())
                    .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned());
                Ok(reply
                    .header("docker-content-digest")
                    .and_then(|v| v.parse::<Digest>().ok())
                    .map_or(Head::Present, |digest| Head::Digest { digest, media_type }))
            }
            StatusCode::NOT_FOUND => Ok(Head::Missing),
            _ => Err(reply.into_error(registry, &operation)),
        }
    }

    /// Stores `manifest` in `repo` under `reference` (its digest or a tag), bytes unchanged.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), RegistryError> {
        self.operation(self.put_manifest_once(repo, reference, manifest))
            .await
    }

    async fn put_manifest_once(
        &self,
        repo: &Repository,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), RegistryError> {
        let registry = repo.registry();
        let operation = format!("PUT manifest {}:{reference}", repo.path());
        let url = self.repo_url(repo, &format!("manifests/{reference}"))?;
        let scope = Scope::push(repo.path());
        let call = Call::new(registry, &scope, &operation, Method::PUT, url)
            .header(CONTENT_TYPE, manifest.media_type.as_str())
            .body(manifest.bytes.clone());
        let reply = self.fetch(call, MAX_EMPTY_BODY).await?;
        if reply.status != StatusCode::CREATED && reply.status != StatusCode::OK {
            return Err(reply.into_error(registry, &operation));
        }
        let stored = reply
            .header("docker-content-digest")
            .and_then(|v| v.parse::<Digest>().ok());
        match stored {
            Some(d) if d.algorithm() == "sha256" && d != manifest.digest => {
                Err(RegistryError::DigestMismatch {
                    registry: registry.to_owned(),
                    what: format!("stored manifest {}:{reference}", repo.path()),
                    expected: manifest.digest.clone(),
                    actual: d,
                })
            }
            _ => Ok(()),
        }
    }
}

enum Head {
    Missing,
    Present,
    Digest {
        digest: Digest,
        media_type: Option<String>,
    },
}

/// What a HEAD of a manifest found.
#[derive(Debug, Clone)]
pub enum ManifestHead {
    /// Nothing under that reference.
    Missing,
    /// A manifest with this digest (and the media type the registry gave, if any).
    Found {
        /// Its digest.
        digest: Digest,
        /// Its media type.
        media_type: Option<String>,
    },
    /// The answer had no digest, so the manifest was read: here it is.
    Read(Manifest),
}

pub(crate) fn protocol(registry: &str, operation: &str, message: String) -> RegistryError {
    RegistryError::Protocol {
        registry: registry.to_owned(),
        operation: operation.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_from_header_body_or_shape() {
        let index = Bytes::from_static(br#"{"schemaVersion":2,"manifests":[]}"#);
        let m = Manifest::from_bytes(index.clone(), None).unwrap();
        assert_eq!(m.kind(), ManifestKind::Index);
        assert_eq!(m.digest, Digest::sha256_of(&index));
        let m = Manifest::from_bytes(index, Some("application/json")).unwrap();
        assert_eq!(m.kind(), ManifestKind::Index);
        let list = Bytes::from_static(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#,
        );
        assert_eq!(
            Manifest::from_bytes(list, None).unwrap().kind(),
            ManifestKind::Index
        );
        let image = Bytes::from_static(br#"{"schemaVersion":2,"config":{},"layers":[]}"#);
        assert_eq!(
            Manifest::from_bytes(image, Some(OCI_IMAGE_MEDIA_TYPE))
                .unwrap()
                .kind(),
            ManifestKind::Image
        );
    }

    #[test]
    fn schema1_is_refused_by_name() {
        let s1 = Bytes::from_static(br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#);
        let e = Manifest::from_bytes(s1, Some(SCHEMA1_SIGNED)).unwrap_err();
        assert!(e.contains("schema1"), "{e}");
        let s1 = Bytes::from_static(br#"{"schemaVersion":1}"#);
        assert!(Manifest::from_bytes(s1, None).is_err());
    }

    #[test]
    fn descriptors_and_platforms() {
        let d = Digest::sha256_of(b"x");
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_IMAGE_INDEX_MEDIA_TYPE}","manifests":[
              {{"mediaType":"{OCI_IMAGE_MEDIA_TYPE}","digest":"{d}","size":1,
                "platform":{{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1"}}}},
              {{"mediaType":"{OCI_IMAGE_MEDIA_TYPE}","digest":"{d}","size":1,
                "platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"{OCI_IMAGE_MEDIA_TYPE}","digest":"{d}","size":1,
                "platform":{{"architecture":"unknown","os":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#
        );
        let m = Manifest::from_bytes(Bytes::from(index), None).unwrap();
        let platforms: Vec<String> = m
            .children()
            .unwrap()
            .into_iter()
            .map(|c| c.platform.unwrap())
            .collect();
        assert_eq!(
            platforms,
            [
                "windows/amd64:10.0.17763.1",
                "linux/arm64/v8",
                "unknown/unknown"
            ]
        );
    }
}
