//! The OCI referrers API (distribution-spec v1.1, "Listing Referrers"), which Harbor ≥ 2.8,
//! Quay, ACR and zot answer and no registry that runs here does (distribution 2.8 and 3 answer
//! 404): a front [`Hook`] that learns each manifest with a `subject` pushed through it and
//! answers `GET /v2/<name>/referrers/<digest>` with an image index of their descriptors,
//! `artifactType` filled as the spec says, a page of `page_size` entries at a time with a
//! `Link: <…>; rel="next"` to the next page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::front::Hook;
use crate::http::{Body, Reply, Response};
use image_mirror_common::Digest;

/// What the front has learned: per (repository, subject digest), the referrers' descriptors
/// in the order they were pushed.
#[derive(Default)]
pub struct Learned {
    by_subject: Mutex<HashMap<(String, String), Vec<Value>>>,
    pages_served: Mutex<u64>,
}

impl Learned {
    /// The descriptors listed for `subject` in `repo`.
    pub fn referrers(&self, repo: &str, subject: &Digest) -> Vec<Value> {
        let map = self.by_subject.lock().expect("learned");
        map.get(&(repo.to_owned(), subject.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Referrers pages answered.
    pub fn pages_served(&self) -> u64 {
        *self.pages_served.lock().expect("pages")
    }
}

/// `/v2/<name>/<what>/<rest>` split at the last `/<what>/`.
fn split<'a>(path: &'a str, what: &str) -> Option<(&'a str, &'a str)> {
    let rest = path.strip_prefix("/v2/")?;
    let at = rest.rfind(&format!("/{what}/"))?;
    Some((&rest[..at], &rest[at + what.len() + 2..]))
}

/// The descriptor of a pushed manifest with a subject: `(subject digest, descriptor)`.
fn descriptor(body: &[u8], content_type: &str) -> Option<(String, Value)> {
    let manifest: Value = serde_json::from_slice(body).ok()?;
    let subject = manifest.pointer("/subject/digest")?.as_str()?.to_owned();
    let artifact_type = manifest
        .get("artifactType")
        .or_else(|| manifest.pointer("/config/mediaType"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut d = json!({
        "mediaType": content_type,
        "digest": Digest::sha256_of(body).to_string(),
        "size": body.len(),
        "artifactType": artifact_type,
    });
    if let Some(a) = manifest.get("annotations") {
        d["annotations"] = a.clone();
    }
    Some((subject, d))
}

/// The hook, and what it learns. `page_size` entries per page (at least 1).
pub fn hook(page_size: usize) -> (Hook, Arc<Learned>) {
    let learned = Arc::new(Learned::default());
    let l = Arc::clone(&learned);
    let page_size = page_size.max(1);
    let hook: Hook = Arc::new(move |request| {
        let path = request.path();
        if request.method == "PUT" {
            if let Some((repo, _)) = split(path, "manifests") {
                let content_type = request
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .map_or("application/vnd.oci.image.manifest.v1+json", |(_, v)| {
                        v.as_str()
                    });
                if let Some((subject, d)) = descriptor(&request.body, content_type) {
                    let mut map = l.by_subject.lock().expect("learned");
                    let list = map.entry((repo.to_owned(), subject)).or_default();
                    if !list.iter().any(|x| x["digest"] == d["digest"]) {
                        list.push(d);
                    }
                }
            }
            return None;
        }
        if request.method != "GET" {
            return None;
        }
        let (repo, subject) = split(path, "referrers")?;
        let page: usize = request
            .target
            .split_once("page=")
            .and_then(|(_, p)| p.split('&').next()?.parse().ok())
            .unwrap_or(0);
        let all = l
            .by_subject
            .lock()
            .expect("learned")
            .get(&(repo.to_owned(), subject.to_owned()))
            .cloned()
            .unwrap_or_default();
        *l.pages_served.lock().expect("pages") += 1;
        let start = (page * page_size).min(all.len());
        let end = (start + page_size).min(all.len());
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": all[start..end],
        });
        let mut response = Response::new(200)
            .header("Content-Type", "application/vnd.oci.image.index.v1+json")
            .body(Body::Bytes(index.to_string().into_bytes()));
        if end < all.len() {
            let next = format!(
                "</v2/{repo}/referrers/{subject}?page={}>; rel=\"next\"",
                page + 1
            );
            response = response.header("link", next);
        }
        Some(Reply::Send(response))
    });
    (hook, learned)
}
