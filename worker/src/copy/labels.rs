//! The labels of a source image's config, for the policy hook: read only when the hook is to
//! be asked (something will be written), from the manifest the copy reads anyway (kept in the
//! source's head, so it is not read twice) and its config blob, within [`MAX_CONFIG`] bytes.
//! An index has no config of its own: no labels. A read that fails leaves them out; the copy
//! then reports its own errors.

use std::collections::BTreeMap;

use bytes::BytesMut;
use image_mirror_common::{Digest, ImageRef};
use image_mirror_registry::RegistryClient;
use serde_json::Value;

use crate::copy::resolve::SourceHead;

/// The largest config blob read for its labels.
const MAX_CONFIG: u64 = 1024 * 1024;

/// The labels of `source`'s config (`config.Labels`), its manifest read into `head`.
pub(crate) async fn config_labels(
    client: &RegistryClient,
    source: &ImageRef,
    head: &mut SourceHead,
) -> BTreeMap<String, String> {
    let repo = source.repository();
    if head.read.is_none() {
        match client.get_manifest(repo, head.digest.as_str()).await {
            Ok(m) => head.read = Some(m),
            Err(e) => {
                tracing::debug!(image = %source, error = %e, "no labels for the policy hook");
                return BTreeMap::new();
            }
        }
    }
    let Some((digest, size)) = head.read.as_ref().and_then(|m| config_of(&m.bytes)) else {
        return BTreeMap::new();
    };
    if size > MAX_CONFIG {
        return BTreeMap::new();
    }
    let Ok(mut download) = client.get_blob(repo, &digest, 0, size).await else {
        return BTreeMap::new();
    };
    let mut bytes = BytesMut::new();
    while let Ok(Some(chunk)) = download.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > size {
            return BTreeMap::new();
        }
    }
    if Digest::sha256_of(&bytes) != digest {
        return BTreeMap::new();
    }
    labels_in(&bytes)
}

/// The config descriptor of an image manifest: its digest and size.
fn config_of(manifest: &[u8]) -> Option<(Digest, u64)> {
    let body: Value = serde_json::from_slice(manifest).ok()?;
    let config = body.get("config")?;
    Some((
        config.get("digest")?.as_str()?.parse().ok()?,
        config.get("size")?.as_u64()?,
    ))
}

/// `config.Labels` of an image config.
fn labels_in(config: &[u8]) -> BTreeMap<String, String> {
    serde_json::from_slice::<Value>(config)
        .ok()
        .and_then(|c| {
            c.pointer("/config/Labels")
                .and_then(Value::as_object)
                .cloned()
        })
        .map(|labels| {
            labels
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_configs_and_an_index_has_none() {
        let config = br#"{"config": {"Labels": {"org.opencontainers.image.source": "https://github.com/acme/app", "n": 1}}}"#;
        let labels = labels_in(config);
        assert_eq!(labels.len(), 1);
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://github.com/acme/app"
        );
        assert!(config_of(br#"{"manifests": []}"#).is_none());
        assert!(labels_in(b"{}").is_empty());
    }
}
