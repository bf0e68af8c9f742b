//! Pushing blobs and manifests straight through the registry HTTP API (no client under test
//! involved): `POST` an upload, `PUT` it with its digest; `PUT` manifests with their media type.

use image_mirror_common::Digest;
use reqwest::{Client, StatusCode};

use crate::images::{Blob, Image};

/// Pushes every blob and manifest of `image` to `repo` on the registry at `base_url`
/// (`http://127.0.0.1:PORT`), children first, and tags the top-level manifest with `tag`.
pub async fn push_image(base_url: &str, repo: &str, tag: &str, image: &Image) {
    let http = Client::new();
    for blob in &image.blobs {
        push_blob(&http, base_url, repo, &blob.digest, blob.bytes.clone()).await;
    }
    let (children, top) = image.manifests.split_at(image.manifests.len() - 1);
    for m in children {
        push_manifest(&http, base_url, repo, m.digest.as_str(), m).await;
    }
    push_manifest(&http, base_url, repo, tag, &top[0]).await;
}

/// Pushes `image` to `repo:tag`, sending only the blobs the repository lacks (so that images
/// sharing a large base push it once).
pub async fn push_image_lacking(base_url: &str, repo: &str, tag: &str, image: &Image) {
    let http = Client::new();
    for blob in &image.blobs {
        let head = http
            .head(format!("{base_url}/v2/{repo}/blobs/{}", blob.digest))
            .send()
            .await
            .expect("HEAD blob");
        if head.status() != StatusCode::OK {
            push_blob(&http, base_url, repo, &blob.digest, blob.bytes.clone()).await;
        }
    }
    let (children, top) = image.manifests.split_at(image.manifests.len() - 1);
    for m in children {
        push_manifest(&http, base_url, repo, m.digest.as_str(), m).await;
    }
    push_manifest(&http, base_url, repo, tag, &top[0]).await;
}

/// Uploads one blob in a single request.
pub async fn push_blob(http: &Client, base_url: &str, repo: &str, digest: &Digest, bytes: Vec<u8>) {
    let start = http
        .post(format!("{base_url}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("start upload");
    assert_eq!(
        start.status(),
        StatusCode::ACCEPTED,
        "start upload of {digest}"
    );
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload location")
        .to_owned();
    let mut url = reqwest::Url::parse(base_url)
        .and_then(|b| b.join(&location))
        .expect("upload URL");
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    let done = http
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("finish upload");
    assert_eq!(
        done.status(),
        StatusCode::CREATED,
        "finish upload of {digest}"
    );
}

/// Puts a manifest under `reference` (a tag or its digest).
pub async fn push_manifest(http: &Client, base_url: &str, repo: &str, reference: &str, m: &Blob) {
    let resp = http
        .put(format!("{base_url}/v2/{repo}/manifests/{reference}"))
        .header("content-type", m.media_type)
        .body(m.bytes.clone())
        .send()
        .await
        .expect("put manifest");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "put manifest {reference}: {body}"
    );
}
