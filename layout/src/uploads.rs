//! The pushes a bundle being written takes (`export`'s in-process registry): blob uploads in
//! sessions (one request, chunks, a status `GET`, a mount of a blob the bundle holds), each
//! blob checked against its digest as it lands and stored once; manifests by tag or digest.
//! A manifest is stored whatever it lists: the bundle takes a sparse index as it is.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use image_mirror_common::Digest;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::answers::{empty, error, internal, Body};
use crate::bundle::{Bundle, Session};
use crate::catalog::sniff_media_type;
use crate::layout::MAX_JSON;

/// `POST`, `PATCH`, `PUT`, `GET` and `DELETE` of the uploads of `name`.
pub(crate) async fn upload(
    bundle: &Bundle,
    name: &str,
    session: Option<&str>,
    request: Request<Incoming>,
) -> Response<Body> {
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{key}=")))
            .map(|v| v.replace("%3A", ":").replace("%3a", ":"))
    };
    match (method, session) {
        (Method::POST, None) => {
            if let Some(Ok(mounted)) = param("mount").map(|d| d.parse::<Digest>()) {
                if bundle.layout.blob_size(&mounted).is_some() {
                    return created(name, &mounted);
                }
            }
            let id = new_session(bundle);
            let Some(id) = id else {
                return internal();
            };
            match param("digest") {
                Some(digest) => {
                    let appended = append(bundle, &id, request.into_body()).await;
                    finish_or_fail(bundle, name, &id, &digest, appended).await
                }
                None => accepted(bundle, name, &id),
            }
        }
        (Method::PATCH, Some(id)) => match append(bundle, id, request.into_body()).await {
            Ok(()) => accepted(bundle, name, id),
            Err(r) => r,
        },
        (Method::PUT, Some(id)) => {
            let digest = param("digest").unwrap_or_default();
            let appended = append(bundle, id, request.into_body()).await;
            finish_or_fail(bundle, name, id, &digest, appended).await
        }
        (Method::GET, Some(id)) => accepted_as(bundle, name, id, StatusCode::NO_CONTENT),
        (Method::DELETE, Some(id)) => {
            let gone = take(bundle, id);
            if let Some(s) = gone {
                let _ = std::fs::remove_file(&s.path);
            }
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "not supported",
        ),
    }
}

fn new_session(bundle: &Bundle) -> Option<String> {
    let id = format!("{:032x}", rand::random::<u128>());
    let dir = bundle.layout.uploads_dir();
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(&id);
    std::fs::File::create(&path).ok()?;
    let session = Session {
        path,
        size: 0,
        hasher: Sha256::new(),
    };
    sessions(bundle).insert(id.clone(), session);
    Some(id)
}

fn sessions(
    bundle: &Bundle,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Session>> {
    bundle
        .sessions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn take(bundle: &Bundle, id: &str) -> Option<Session> {
    sessions(bundle).remove(id)
}

/// Appends the request body to session `id`, hashing it as it goes.
async fn append(bundle: &Bundle, id: &str, mut body: Incoming) -> Result<(), Response<Body>> {
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "upload unknown",
        )
    };
    let Some(mut session) = take(bundle, id) else {
        return Err(unknown());
    };
    let written = async {
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&session.path)
            .await?;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data).await?;
                session.hasher.update(&data);
                session.size += data.len() as u64;
            }
        }
        file.flush().await
    }
    .await;
    let failed = written.is_err();
    sessions(bundle).insert(id.to_owned(), session);
    if failed {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "BLOB_UPLOAD_INVALID",
            "the upload could not be written",
        ));
    }
    Ok(())
}

async fn finish_or_fail(
    bundle: &Bundle,
    name: &str,
    id: &str,
    digest: &str,
    appended: Result<(), Response<Body>>,
) -> Response<Body> {
    if let Err(r) = appended {
        return r;
    }
    let Ok(digest) = digest.parse::<Digest>() else {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "no digest given");
    };
    let Some(session) = take(bundle, id) else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "upload unknown",
        );
    };
    let actual = Digest::from_sha256_bytes(&session.hasher.finalize());
    if actual != digest {
        let _ = std::fs::remove_file(&session.path);
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "the upload does not match its digest",
        );
    }
    // Appending a large blob to a tar is blocking work.
    let layout = bundle.layout.clone();
    let landing = digest.clone();
    let landed =
        tokio::task::spawn_blocking(move || layout.land(&landing, &session.path, session.size))
            .await;
    match landed {
        Ok(Ok(())) => created(name, &digest),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a blob could not be stored in the bundle");
            internal()
        }
        Err(_) => internal(),
    }
}

fn created(name: &str, digest: &Digest) -> Response<Body> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header("location", format!("/v2/{name}/blobs/{digest}"))
        .header("docker-content-digest", digest.to_string())
        .header("content-length", 0)
        .body(empty())
        .unwrap_or_else(|_| internal())
}

fn accepted(bundle: &Bundle, name: &str, id: &str) -> Response<Body> {
    accepted_as(bundle, name, id, StatusCode::ACCEPTED)
}

fn accepted_as(bundle: &Bundle, name: &str, id: &str, status: StatusCode) -> Response<Body> {
    let size = sessions(bundle).get(id).map(|s| s.size);
    let Some(size) = size else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "upload unknown",
        );
    };
    Response::builder()
        .status(status)
        .header("location", format!("/v2/{name}/blobs/uploads/{id}"))
        .header("docker-upload-uuid", id)
        .header("range", format!("0-{}", size.saturating_sub(1)))
        .header("content-length", 0)
        .body(empty())
        .unwrap_or_else(|_| internal())
}

/// `PUT` of a manifest under a tag or its digest.
pub(crate) async fn put_manifest(
    bundle: &Bundle,
    name: &str,
    reference: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
    let bytes = match read_capped(request.into_body()).await {
        Some(bytes) => bytes,
        None => return error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "too large"),
    };
    let digest = Digest::sha256_of(&bytes);
    let named_digest = reference.parse::<Digest>().ok();
    if named_digest.as_ref().is_some_and(|d| *d != digest) {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "not the manifest's digest",
        );
    }
    let Some(media_type) = content_type
        .filter(|t| !t.is_empty() && t != "application/json")
        .or_else(|| sniff_media_type(&bytes))
    else {
        return error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "not JSON");
    };
    if bundle.layout.put_small(&digest, &bytes).is_err() {
        return internal();
    }
    bundle.catalog_mut(|c| {
        c.learn(&digest, &media_type, &bytes);
        match named_digest {
            Some(d) => {
                c.untagged.entry(name.to_owned()).or_default().insert(d);
            }
            None => {
                c.tags
                    .entry(name.to_owned())
                    .or_default()
                    .insert(reference.to_owned(), digest.clone());
            }
        }
    });
    Response::builder()
        .status(StatusCode::CREATED)
        .header("location", format!("/v2/{name}/manifests/{digest}"))
        .header("docker-content-digest", digest.to_string())
        .header("content-length", 0)
        .body(empty())
        .unwrap_or_else(|_| internal())
}

/// A request body of at most [`MAX_JSON`] bytes.
async fn read_capped(mut body: Incoming) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let data: Bytes = frame.ok()?.into_data().unwrap_or_default();
        if bytes.len() as u64 + data.len() as u64 > MAX_JSON {
            return None;
        }
        bytes.extend_from_slice(&data);
    }
    Some(bytes)
}
