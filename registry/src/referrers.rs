//! OCI 1.1 referrers: the manifests whose `subject` is a given manifest (signatures,
//! attestations, SBOMs), read by the registry's referrers API
//! (`GET /v2/<name>/referrers/<digest>`, paged with `Link`) where it answers, else from the
//! **fallback tag** `<alg>-<hex>` holding an index of them, as the distribution spec says; and
//! the fallback tag's index written back with an entry added (no duplicates).
//!
//! Each page and the fallback index are read within [`MAX_MANIFEST_BYTES`]; pages are bounded
//! in number, and a `Link` to another origin is refused, as for tag lists.

use std::collections::HashSet;

use bytes::Bytes;
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};

use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::manifest::{protocol, Manifest, MAX_MANIFEST_BYTES};
use crate::scope::Scope;
use crate::transport::Call;
use image_mirror_common::digest::Digest;
use image_mirror_common::reference::Repository;

/// The media type of an OCI image index (the referrers list, and the fallback tag's content).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A bound on referrers pages.
const MAX_PAGES: usize = 100;

/// One manifest that refers to another, as a referrers list describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    /// Its digest.
    pub digest: Digest,
    /// Its artifact type (the manifest's `artifactType`, else its config's media type).
    pub artifact_type: Option<String>,
    /// The descriptor exactly as listed (media type, size, annotations), for writing it
    /// into a fallback index.
    pub descriptor: Map<String, Value>,
}

/// Where a registry keeps the referrers of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Referrers {
    /// The registry answers the referrers API.
    Api(Vec<Referrer>),
    /// It does not (404): the fallback tag's index, empty when the tag does not exist.
    FallbackTag(Vec<Referrer>),
}

impl Referrers {
    /// The referrers, wherever they were listed.
    pub fn list(&self) -> &[Referrer] {
        match self {
            Self::Api(l) | Self::FallbackTag(l) => l,
        }
    }
}

/// The fallback tag of `digest`: `<alg>-<hex>`, cut to 128 characters (the longest tag).
pub fn fallback_tag(digest: &Digest) -> String {
    let mut tag = format!("{}-{}", digest.algorithm(), digest.encoded());
    tag.truncate(128);
    tag
}

/// The entries of an index's `manifests`, each with a digest.
pub(crate) fn entries(body: &[u8]) -> Result<Vec<Referrer>, String> {
    let index: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(manifests) = index.get("manifests").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    manifests
        .iter()
        .map(|m| {
            let descriptor = m
                .as_object()
                .cloned()
                .ok_or_else(|| "an index entry is not an object".to_owned())?;
            let digest = descriptor
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| "an index entry has no digest".to_owned())?
                .parse::<Digest>()
                .map_err(|e| e.to_string())?;
            let artifact_type = descriptor
                .get("artifactType")
                .and_then(Value::as_str)
                .map(str::to_owned);
            Ok(Referrer {
                digest,
                artifact_type,
                descriptor,
            })
        })
        .collect()
}

/// The descriptor of `manifest` for a referrers index: media type, digest, size, its
/// `artifactType` (else its config's media type) and its annotations.
pub fn descriptor_of(manifest: &Manifest) -> Result<Referrer, String> {
    let body: Value =
        serde_json::from_slice(&manifest.bytes).map_err(|e| format!("not JSON: {e}"))?;
    let artifact_type = body
        .get("artifactType")
        .and_then(Value::as_str)
        .or_else(|| body.pointer("/config/mediaType").and_then(Value::as_str))
        .map(str::to_owned);
    let mut descriptor = Map::new();
    descriptor.insert("mediaType".into(), manifest.media_type.clone().into());
    descriptor.insert("digest".into(), manifest.digest.to_string().into());
    descriptor.insert("size".into(), manifest.bytes.len().into());
    if let Some(t) = &artifact_type {
        descriptor.insert("artifactType".into(), t.clone().into());
    }
    if let Some(a) = body.get("annotations").filter(|a| a.is_object()) {
        descriptor.insert("annotations".into(), a.clone());
    }
    Ok(Referrer {
        digest: manifest.digest.clone(),
        artifact_type,
        descriptor,
    })
}

/// `index` (a fallback tag's content, or `None`) with `added` put in, each digest once:
/// `None` when every one of them is listed already.
pub fn merged_index(index: Option<&Manifest>, added: &[Referrer]) -> Result<Option<Bytes>, String> {
    let mut body: Map<String, Value> = match index {
        Some(m) => serde_json::from_slice(&m.bytes).map_err(|e| format!("not JSON: {e}"))?,
        None => {
            let mut b = Map::new();
            b.insert("schemaVersion".into(), 2.into());
            b.insert("mediaType".into(), OCI_INDEX.into());
            b.insert("manifests".into(), Value::Array(Vec::new()));
            b
        }
    };
    let listed: HashSet<Digest> = match index {
        Some(m) => entries(&m.bytes)?.into_iter().map(|r| r.digest).collect(),
        None => HashSet::new(),
    };
    let mut new: Vec<Value> = Vec::new();
    let mut taken = listed;
    for r in added {
        if taken.insert(r.digest.clone()) {
            new.push(Value::Object(r.descriptor.clone()));
        }
    }
    if new.is_empty() {
        return Ok(None);
    }
    let manifests = body
        .entry("manifests")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = manifests.as_array_mut() else {
        return Err("the index's manifests is not a list".into());
    };
    list.extend(new);
    serde_json::to_vec(&body)
        .map(|v| Some(Bytes::from(v)))
        .map_err(|e| e.to_string())
}

impl RegistryClient {
    /// The referrers of `digest` in `repo`: by the referrers API where the registry answers
    /// it, else from the fallback tag.
    pub async fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Referrers, RegistryError> {
        match self.referrers_api(repo, digest).await? {
            Some(list) => Ok(Referrers::Api(list)),
            None => {
                let index = self.fallback_index(repo, digest).await?;
                let list = match index {
                    Some(m) => entries(&m.bytes).map_err(|e| {
                        protocol(repo.registry(), "read a referrers fallback tag", e)
                    })?,
                    None => Vec::new(),
                };
                Ok(Referrers::FallbackTag(list))
            }
        }
    }

    /// The fallback tag's index of `digest` in `repo`, if the tag exists.
    pub async fn fallback_index(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Option<Manifest>, RegistryError> {
        match self.get_manifest(repo, &fallback_tag(digest)).await {
            Ok(m) => Ok(Some(m)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every page of the referrers API, or `None` when the registry does not answer it.
    async fn referrers_api(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Option<Vec<Referrer>>, RegistryError> {
        let mut next = Some(self.repo_url(repo, &format!("referrers/{digest}"))?);
        let (mut visited, mut list) = (HashSet::new(), Vec::new());
        while let Some(url) = next.take() {
            if !visited.insert(url.to_string()) || visited.len() > MAX_PAGES {
                break;
            }
            let page = self
                .operation(self.referrers_page(repo, digest, &url))
                .await?;
            let Some((entries, link)) = page else {
                return Ok(None);
            };
            list.extend(entries);
            next = link;
        }
        Ok(Some(list))
    }

    async fn referrers_page(
        &self,
        repo: &Repository,
        digest: &Digest,
        url: &Url,
    ) -> Result<Option<(Vec<Referrer>, Option<Url>)>, RegistryError> {
        let registry = repo.registry();
        let operation = format!("list referrers of {}@{digest}", repo.path());
        let scope = Scope::pull(repo.path());
        let call = Call::new(registry, &scope, &operation, Method::GET, url.clone())
            .header(ACCEPT, OCI_INDEX);
        let reply = self.fetch(call, MAX_MANIFEST_BYTES).await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(reply.into_error(registry, &operation)),
        }
        let next = self.next_page(registry, &operation, &reply)?;
        let entries = entries(&reply.body).map_err(|e| protocol(registry, &operation, e))?;
        Ok(Some((entries, next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: &str) -> Manifest {
        Manifest::from_bytes(Bytes::from(json.to_owned()), Some(OCI_INDEX)).unwrap()
    }

    fn referrer(n: u8) -> Referrer {
        let digest = Digest::sha256_of(&[n]);
        let mut descriptor = Map::new();
        descriptor.insert(
            "mediaType".into(),
            "application/vnd.oci.image.manifest.v1+json".into(),
        );
        descriptor.insert("digest".into(), digest.to_string().into());
        descriptor.insert("size".into(), 10.into());
        Referrer {
            digest,
            artifact_type: None,
            descriptor,
        }
    }

    #[test]
    fn the_fallback_tag_is_the_algorithm_and_hex() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.encoded()));
    }

    #[test]
    fn a_merge_adds_each_digest_once_and_keeps_what_was_listed() {
        let first = merged_index(None, &[referrer(1), referrer(1)])
            .unwrap()
            .unwrap();
        let first = manifest(std::str::from_utf8(&first).unwrap());
        assert_eq!(entries(&first.bytes).unwrap().len(), 1);
        assert_eq!(merged_index(Some(&first), &[referrer(1)]).unwrap(), None);
        let second = merged_index(Some(&first), &[referrer(2), referrer(1)])
            .unwrap()
            .unwrap();
        let digests: Vec<_> = entries(&second)
            .unwrap()
            .into_iter()
            .map(|r| r.digest)
            .collect();
        assert_eq!(digests, vec![referrer(1).digest, referrer(2).digest]);
    }
}
