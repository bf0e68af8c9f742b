//! A registry over a bundle (`image-mirror serve`, and the in-process end of `export` and
//! `import`): the distribution API's reads (`/v2/`, manifests by tag and digest, blobs with
//! `Range`, tag lists, the referrers API), and, when the bundle is being written, its pushes
//! (`uploads.rs`). A read-only bundle answers every write with `405 UNSUPPORTED`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use image_mirror_common::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

use crate::answers::{empty, error, full, internal, Body};
use crate::bundle::Bundle;
use crate::catalog::sniff_media_type;
use crate::parts::PartFiles;

/// Bytes read from a blob file at a time.
const READ_AT_ONCE: usize = 256 * 1024;

/// Serves `bundle` on `listener` until the task is dropped or aborted; the address it took.
pub fn serve(
    bundle: Arc<Bundle>,
    listener: TcpListener,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let bundle = Arc::clone(&bundle);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let bundle = Arc::clone(&bundle);
                    async move { Ok::<_, Infallible>(answer(&bundle, request).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "a connection to the bundle's registry ended");
                }
            });
        }
    });
    Ok((addr, task))
}

/// What a request asks for, by its path.
enum Route {
    Base,
    Manifest {
        name: String,
        reference: String,
    },
    Blob {
        digest: String,
    },
    Uploads {
        name: String,
        session: Option<String>,
    },
    Tags {
        name: String,
    },
    Referrers {
        digest: String,
    },
}

fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2/")?;
    if rest.is_empty() {
        return Some(Route::Base);
    }
    let split = |marker: &str| {
        rest.rfind(marker)
            .map(|at| (rest[..at].to_owned(), rest[at + marker.len()..].to_owned()))
    };
    if let Some((name, session)) = split("/blobs/uploads/") {
        let session = Some(session).filter(|s| !s.is_empty());
        return Some(Route::Uploads { name, session });
    }
    if let Some((name, reference)) = split("/manifests/") {
        return Some(Route::Manifest { name, reference });
    }
    if let Some((_, digest)) = split("/blobs/") {
        return Some(Route::Blob { digest });
    }
    if let Some((_, digest)) = split("/referrers/") {
        return Some(Route::Referrers { digest });
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags {
            name: name.to_owned(),
        });
    }
    None
}

async fn answer(bundle: &Bundle, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let Some(route) = route(&path) else {
        return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such route");
    };
    let reading = method == Method::GET || method == Method::HEAD;
    match route {
        Route::Base if reading => json(StatusCode::OK, "{}".into(), &method),
        Route::Manifest { name, reference } if reading => {
            manifest(bundle, &name, &reference, &method)
        }
        Route::Blob { digest } if reading => {
            blob(bundle, &digest, &method, request.headers()).await
        }
        Route::Tags { name } if reading => tags(bundle, &name, &method),
        Route::Referrers { digest } if reading && method == Method::GET => {
            referrers(bundle, &digest, request.uri().query())
        }
        _ if !bundle.writable => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this registry serves a bundle and takes no writes",
        ),
        Route::Uploads { name, session } => {
            crate::uploads::upload(bundle, &name, session.as_deref(), request).await
        }
        Route::Manifest { name, reference } if method == Method::PUT => {
            crate::uploads::put_manifest(bundle, &name, &reference, request).await
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "not supported",
        ),
    }
}

fn manifest(bundle: &Bundle, name: &str, reference: &str, method: &Method) -> Response<Body> {
    let digest = match reference.parse::<Digest>() {
        Ok(d) => Some(d),
        Err(_) => bundle.with_catalog(|c| c.tag(name, reference).cloned()),
    };
    let Some(digest) = digest else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        );
    };
    let bytes = match bundle.layout.read_small(&digest) {
        Ok(bytes) => bytes,
        Err(_) => {
            // A delta export answers for the tags of the bundle it follows (an image it
            // holds is not written again); a manifest asked for by digest is written again
            // (it is small), so that each image of a delta has its manifests whole.
            let by_tag = reference.parse::<Digest>().is_err();
            let held = bundle.with_catalog(|c| c.base.get(&digest).cloned());
            return match held {
                Some(held) if *method == Method::HEAD && by_tag => {
                    let media_type = held.media_type.unwrap_or_default();
                    let mut r = Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", media_type)
                        .header("content-length", held.size)
                        .header("docker-content-digest", digest.to_string());
                    r = r.header("accept-ranges", "bytes");
                    r.body(empty()).unwrap_or_else(|_| internal())
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                ),
            };
        }
    };
    let media_type = bundle
        .with_catalog(|c| c.media_types.get(&digest).cloned())
        .or_else(|| sniff_media_type(&bytes))
        .unwrap_or_default();
    let len = bytes.len();
    let body = if *method == Method::HEAD {
        empty()
    } else {
        full(bytes)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", media_type)
        .header("content-length", len)
        .header("docker-content-digest", digest.to_string())
        .body(body)
        .unwrap_or_else(|_| internal())
}

async fn blob(
    bundle: &Bundle,
    digest: &str,
    method: &Method,
    headers: &hyper::HeaderMap,
) -> Response<Body> {
    let Ok(digest) = digest.parse::<Digest>() else {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "not a digest");
    };
    let span = bundle.layout.blob_span(&digest);
    // A tar being written is not read back: its blobs are only said to be there.
    let size = span
        .as_ref()
        .map(|(_, _, size)| *size)
        .or_else(|| bundle.layout.blob_size(&digest));
    let Some(size) = size else {
        let held = bundle.with_catalog(|c| c.base.get(&digest).cloned());
        return match held {
            Some(held) if *method == Method::HEAD => Response::builder()
                .status(StatusCode::OK)
                .header("content-length", held.size)
                .header("docker-content-digest", digest.to_string())
                .body(empty())
                .unwrap_or_else(|_| internal()),
            _ => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"),
        };
    };
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| parse_range(r, size));
    let (status, start, end) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let len = if size == 0 { 0 } else { end + 1 - start };
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/octet-stream")
        .header("content-length", len)
        .header("accept-ranges", "bytes")
        .header("docker-content-digest", digest.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        r = r.header("content-range", format!("bytes {start}-{end}/{size}"));
    }
    let body = match span {
        Some((files, offset, _)) if *method != Method::HEAD && len > 0 => {
            file_body(files, offset + start, len)
        }
        _ => empty(),
    };
    r.body(body).unwrap_or_else(|_| internal())
}

/// `bytes=a-b` or `bytes=a-` within `size`.
fn parse_range(range: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = range.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = match b.trim() {
        "" => size.checked_sub(1)?,
        b => b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

/// `len` bytes of `files` from `start`, read as they are sent (across parts when cut).
fn file_body(files: PartFiles, start: u64, len: u64) -> Body {
    /// Where the stream stands: the next byte, and the part open at it.
    struct Reading {
        files: PartFiles,
        at: u64,
        open: Option<(PathBuf, tokio::fs::File)>,
    }
    let end = start + len;
    let first = Reading {
        files,
        at: start,
        open: None,
    };
    let stream = futures_util::stream::unfold(first, move |mut r| async move {
        if r.at >= end {
            return None;
        }
        let Some((path, offset, left)) = r.files.locate(r.at).map(|(p, o, l)| (p.to_owned(), o, l))
        else {
            r.at = end;
            return Some((Err(std::io::ErrorKind::UnexpectedEof.into()), r));
        };
        let want = left.min(end - r.at).min(READ_AT_ONCE as u64);
        let read = async {
            // A part is opened (and sought) once; its reads then follow one another.
            if r.open.as_ref().is_none_or(|(open, _)| *open != path) {
                let mut file = tokio::fs::File::open(&path).await?;
                file.seek(std::io::SeekFrom::Start(offset)).await?;
                r.open = Some((path, file));
            }
            let mut buf = vec![0u8; usize::try_from(want).unwrap_or(READ_AT_ONCE)];
            if let Some((_, file)) = r.open.as_mut() {
                file.read_exact(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        }
        .await;
        match read {
            Ok(buf) => {
                r.at += want;
                Some((Ok(Frame::data(Bytes::from(buf))), r))
            }
            Err(e) => {
                r.at = end;
                Some((Err(e), r))
            }
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

fn tags(bundle: &Bundle, name: &str, method: &Method) -> Response<Body> {
    let (known, tags) = bundle.with_catalog(|c| (c.has_repository(name), c.tags_of(name)));
    // A bundle being written holds every blob for every repository: a repository it does
    // not know yet is still asked about each blob (what the bundle, or the one it follows,
    // holds is not sent again).
    if !known && !bundle.writable {
        return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository unknown");
    }
    let body = serde_json::json!({"name": name, "tags": tags}).to_string();
    json(StatusCode::OK, body, method)
}

fn referrers(bundle: &Bundle, digest: &str, query: Option<&str>) -> Response<Body> {
    let Ok(subject) = digest.parse::<Digest>() else {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "not a digest");
    };
    let wanted_type = query.and_then(|q| {
        q.split('&')
            .find_map(|p| p.strip_prefix("artifactType="))
            .map(|t| t.replace("%2F", "/").replace("%2B", "+"))
    });
    let listed = bundle.with_catalog(|c| c.referrers.get(&subject).cloned().unwrap_or_default());
    let mut manifests = Vec::new();
    for digest in listed {
        let Ok(bytes) = bundle.layout.read_small(&digest) else {
            continue;
        };
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let artifact_type = body["artifactType"]
            .as_str()
            .or_else(|| body["config"]["mediaType"].as_str())
            .unwrap_or_default()
            .to_owned();
        if wanted_type.as_ref().is_some_and(|t| *t != artifact_type) {
            continue;
        }
        let mut entry = serde_json::json!({
            "mediaType": body["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json"),
            "digest": digest.to_string(),
            "size": bytes.len(),
            "artifactType": artifact_type,
        });
        if let Some(a) = body.get("annotations") {
            entry["annotations"] = a.clone();
        }
        manifests.push(entry);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(full(index.to_string().into_bytes()))
        .unwrap_or_else(|_| internal())
}

fn json(status: StatusCode, body: String, method: &Method) -> Response<Body> {
    let len = body.len();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", len)
        .header("docker-distribution-api-version", "registry/2.0")
        .body(if *method == Method::HEAD {
            empty()
        } else {
            full(body.into_bytes())
        })
        .unwrap_or_else(|_| internal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_ranges() {
        assert!(matches!(route("/v2/"), Some(Route::Base)));
        assert!(matches!(
            route("/v2/team/app/manifests/v1"),
            Some(Route::Manifest { name, reference }) if name == "team/app" && reference == "v1"
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/"),
            Some(Route::Uploads { name, session: None }) if name == "a"
        ));
        assert!(matches!(
            route("/v2/a/b/blobs/uploads/u1"),
            Some(Route::Uploads { name, session: Some(s) }) if name == "a/b" && s == "u1"
        ));
        assert!(matches!(route("/v2/a/tags/list"), Some(Route::Tags { name }) if name == "a"));
        assert!(route("/v1/x").is_none());
        assert_eq!(parse_range("bytes=10-", 100), Some((10, 99)));
        assert_eq!(parse_range("bytes=10-19", 100), Some((10, 19)));
        assert_eq!(parse_range("bytes=10-500", 100), Some((10, 99)));
        assert_eq!(parse_range("bytes=20-10", 100), None);
    }
}
