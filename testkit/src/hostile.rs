//! A registry that is out to get its clients: an in-memory OCI registry (manifests, blobs,
//! uploads, tag lists, Basic or Bearer auth) that can be told to misbehave the ways a
//! registry one does not control can: upload `Location`s and tag-list `Link`s on another
//! host, blob redirects to another host, token answers, tag pages and error answers that
//! never end or are huge, manifests that trickle a byte at a time, requests never answered.
//!
//! "Another host" is this same server under the name `localhost` (the registry itself is
//! `127.0.0.1`): a different host to any client, and every request is logged with its `Host`
//! header, so a test sees exactly what went where, credentials included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use image_mirror_common::Digest;
use serde_json::json;

use crate::http::{Body, Logged, Reply, Request, Response, Server};
use crate::images::Image;

/// How clients must authenticate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// Not at all.
    #[default]
    None,
    /// HTTP Basic with this user and password.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Bearer tokens from `/token` on this server, which wants this user and password.
    Bearer {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

/// A body a well-behaved server would never send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBody {
    /// Zero bytes forever.
    Endless,
    /// This many bytes, announced with a `Content-Length`.
    Huge(u64),
    /// This many bytes, not announced.
    HugeUnannounced(u64),
}

impl BadBody {
    fn body(self) -> Body {
        match self {
            Self::Endless => Body::Endless,
            Self::Huge(n) => Body::Zeros(n),
            Self::HugeUnannounced(n) => Body::Unannounced(n),
        }
    }
}

/// How tag lists are paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagPaging {
    /// `n` tags a page after `last`, linked by `Link` (as the distribution spec says).
    Proper(usize),
    /// `n` and `last` ignored: the whole list each time, with a `Link` to a "next" page.
    WholeListWithNext,
    /// The whole list, with a `Link` back to the very page just read.
    LinkToItself,
}

/// What to do wrong.
#[derive(Debug, Clone, Default)]
pub struct Hostility {
    /// How clients authenticate.
    pub auth: Auth,
    /// Upload `POST`s answer with a `Location` on the other host.
    pub upload_elsewhere: bool,
    /// Tag lists answer with a `Link` to a next page on the other host.
    pub tags_link_elsewhere: bool,
    /// How tag lists are paged (all of them on one page without a `Link` by default).
    pub tag_paging: Option<TagPaging>,
    /// Blob `GET`s answer `307` to the other host, which serves the bytes without auth.
    pub blob_redirect_elsewhere: bool,
    /// The token endpoint answers this body.
    pub token_body: Option<BadBody>,
    /// Tag list pages are this body.
    pub tags_body: Option<BadBody>,
    /// Every `404` carries this body.
    pub error_body: Option<BadBody>,
    /// Manifest `GET` bodies come one byte at a time, this far apart.
    pub trickle_manifests: Option<Duration>,
    /// The first `GET` of each blob trickles one byte at a time, this far apart (the next
    /// ones, with or without `Range`, are answered at once).
    pub trickle_first_blob_get: Option<Duration>,
    /// The token realm Bearer challenges name, instead of `/token` on this server.
    pub realm: Option<String>,
    /// Blob bodies are sent without a `Content-Length`.
    pub blobs_unannounced: bool,
    /// No request is ever answered.
    pub hang: bool,
}

#[derive(Default)]
struct State {
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
    tags: HashMap<String, Vec<String>>,
    uploads: HashMap<String, Vec<u8>>,
    blob_gets: HashMap<String, usize>,
    tokens: Vec<String>,
    next: u64,
}

/// A running hostile registry; stops when dropped.
pub struct HostileRegistry {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl HostileRegistry {
    /// Starts one that misbehaves as `hostility` says.
    pub fn start(hostility: Hostility) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let port = Arc::new(Mutex::new(0_u16));
        let (s, p) = (Arc::clone(&state), Arc::clone(&port));
        let server = Server::start(move |request| {
            let (state, port, hostility) =
                (Arc::clone(&s), *p.lock().expect("port"), hostility.clone());
            Box::pin(async move { answer(&state, port, &hostility, &request) })
        });
        *port.lock().expect("port") = server.port();
        Self { server, state }
    }

    /// `127.0.0.1:PORT`: the registry.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// `localhost:PORT`: the other host.
    pub fn other_host(&self) -> String {
        format!("localhost:{}", self.server.port())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.server.requests()
    }

    /// The requests that went to the other host.
    pub fn requests_elsewhere(&self) -> Vec<Logged> {
        let other = self.other_host();
        self.requests()
            .into_iter()
            .filter(|r| r.header("host") == Some(other.as_str()))
            .collect()
    }

    /// Stores `image` in `repo` under `tag`.
    pub fn push(&self, repo: &str, tag: &str, image: &Image) {
        let mut st = self.state.lock().expect("state");
        for b in &image.blobs {
            st.blobs.insert(b.digest.to_string(), b.bytes.clone());
        }
        for m in &image.manifests {
            st.manifests.insert(
                (repo.to_owned(), m.digest.to_string()),
                (m.media_type.to_owned(), m.bytes.clone()),
            );
        }
        let top = image.top();
        st.manifests.insert(
            (repo.to_owned(), tag.to_owned()),
            (top.media_type.to_owned(), top.bytes.clone()),
        );
        st.tags
            .entry(repo.to_owned())
            .or_default()
            .push(tag.to_owned());
    }

    /// Stores raw manifest bytes in `repo` under `reference` (and under their digest).
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let mut st = self.state.lock().expect("state");
        let digest = Digest::sha256_of(bytes).to_string();
        for r in [reference.to_owned(), digest] {
            st.manifests.insert(
                (repo.to_owned(), r),
                (media_type.to_owned(), bytes.to_vec()),
            );
        }
    }

    /// Stores blob bytes under `digest`, whatever they hash to.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) {
        let mut st = self.state.lock().expect("state");
        st.blobs.insert(digest.to_owned(), bytes.to_vec());
    }

    /// Sets the tags `repo` lists.
    pub fn set_tags(&self, repo: &str, tags: &[&str]) {
        let mut st = self.state.lock().expect("state");
        st.tags.insert(
            repo.to_owned(),
            tags.iter().map(|t| (*t).to_owned()).collect(),
        );
    }

    /// How many `GET`s of the manifest `reference` of `repo` were served.
    pub fn manifest_gets(&self, repo: &str, reference: &str) -> usize {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.target.split('?').next() == Some(path.as_str()))
            .count()
    }
}

/// The parts of a `/v2/<name>/<kind>/<rest>` path.
fn route(path: &str) -> Option<(String, &'static str, String)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["/manifests/", "/blobs/uploads/", "/blobs/", "/tags/list"] {
        if let Some(i) = rest.rfind(kind) {
            let name = rest[..i].to_owned();
            let tail = rest[i + kind.len()..].to_owned();
            return Some((name, kind.trim_matches('/'), tail));
        }
    }
    None
}

fn error(status: u16, code: &str, hostility: &Hostility) -> Reply {
    let mut r = Response::new(status);
    r = match hostility.error_body {
        Some(bad) if status == 404 => r.body(bad.body()),
        _ => r.json(&json!({"errors": [{"code": code, "message": code.to_lowercase()}]})),
    };
    r.into()
}

fn authorized(state: &Mutex<State>, auth: &Auth, request: &Request) -> bool {
    let given = request.header("authorization").unwrap_or_default();
    match auth {
        Auth::None => true,
        Auth::Basic { user, password } => given == basic(user, password),
        Auth::Bearer { .. } => given
            .strip_prefix("Bearer ")
            .is_some_and(|t| state.lock().expect("state").tokens.iter().any(|k| k == t)),
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn answer(state: &Mutex<State>, port: u16, hostility: &Hostility, request: &Request) -> Reply {
    if hostility.hang {
        return Reply::Hang;
    }
    let here = format!("http://127.0.0.1:{port}");
    let elsewhere = format!("http://localhost:{port}");
    let on_other_host = request
        .header("host")
        .is_some_and(|h| h.starts_with("localhost"));
    if request.path() == "/token" {
        return token(state, hostility, request);
    }
    if let Some(digest) = request.path().strip_prefix("/_storage/") {
        // The other host's storage: no auth, as a CDN serves presigned URLs.
        return match state.lock().expect("state").blobs.get(digest) {
            Some(bytes) => Response::new(200).body(Body::Bytes(bytes.clone())).into(),
            None => error(404, "BLOB_UNKNOWN", hostility),
        };
    }
    if !authorized(state, &hostility.auth, request) {
        let challenge = match &hostility.auth {
            Auth::Bearer { .. } => {
                let realm = hostility
                    .realm
                    .clone()
                    .unwrap_or_else(|| format!("{here}/token"));
                format!("Bearer realm=\"{realm}\",service=\"hostile\"")
            }
            _ => "Basic realm=\"hostile\"".to_owned(),
        };
        return Response::new(401)
            .header("WWW-Authenticate", challenge)
            .json(&json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}))
            .into();
    }
    if request.path() == "/v2/" {
        return Response::new(200).json(&json!({})).into();
    }
    let Some((name, kind, tail)) = route(request.path()) else {
        return error(404, "NAME_UNKNOWN", hostility);
    };
    let base = if hostility.upload_elsewhere || on_other_host {
        &elsewhere
    } else {
        &here
    };
    match (request.method.as_str(), kind) {
        ("GET" | "HEAD", "manifests") => manifest(state, hostility, &name, &tail, request),
        ("PUT", "manifests") => {
            let media_type = request
                .header("content-type")
                .unwrap_or_default()
                .to_owned();
            let digest = Digest::sha256_of(&request.body).to_string();
            let mut st = state.lock().expect("state");
            for r in [tail.clone(), digest.clone()] {
                st.manifests.insert(
                    (name.clone(), r),
                    (media_type.clone(), request.body.clone()),
                );
            }
            Response::new(201)
                .header("Docker-Content-Digest", digest)
                .into()
        }
        ("GET" | "HEAD", "blobs") => blob(state, hostility, &tail, request, &elsewhere),
        ("POST", "blobs/uploads") => {
            let mut st = state.lock().expect("state");
            st.next += 1;
            let id = format!("u{}", st.next);
            st.uploads.insert(id.clone(), Vec::new());
            Response::new(202)
                .header("Location", format!("{base}/v2/{name}/blobs/uploads/{id}"))
                .header("Range", "0-0")
                .into()
        }
        (method, "blobs/uploads") => upload(state, method, &name, &tail, request, base),
        ("GET", "tags/list") => tags(state, hostility, &name, &elsewhere, request),
        _ => error(404, "UNSUPPORTED", hostility),
    }
}

fn manifest(
    state: &Mutex<State>,
    hostility: &Hostility,
    name: &str,
    reference: &str,
    request: &Request,
) -> Reply {
    let st = state.lock().expect("state");
    let Some((media_type, bytes)) = st.manifests.get(&(name.to_owned(), reference.to_owned()))
    else {
        return error(404, "MANIFEST_UNKNOWN", hostility);
    };
    let response = Response::new(200)
        .header("Content-Type", media_type.clone())
        .header(
            "Docker-Content-Digest",
            Digest::sha256_of(bytes).to_string(),
        );
    match hostility.trickle_manifests {
        Some(every) if request.method == "GET" => response
            .body(Body::Trickle {
                bytes: bytes.clone(),
                every,
            })
            .into(),
        _ => response.body(Body::Bytes(bytes.clone())).into(),
    }
}

fn blob(
    state: &Mutex<State>,
    hostility: &Hostility,
    digest: &str,
    request: &Request,
    elsewhere: &str,
) -> Reply {
    let mut st = state.lock().expect("state");
    let Some(bytes) = st.blobs.get(digest).cloned() else {
        return error(404, "BLOB_UNKNOWN", hostility);
    };
    if request.method == "HEAD" {
        return Response::new(200)
            .header("Docker-Content-Digest", digest)
            .body(Body::Bytes(bytes))
            .into();
    }
    if hostility.blob_redirect_elsewhere {
        return Response::new(307)
            .header("Location", format!("{elsewhere}/_storage/{digest}"))
            .into();
    }
    let gets = st.blob_gets.entry(digest.to_owned()).or_default();
    *gets += 1;
    if let (Some(every), 1) = (hostility.trickle_first_blob_get, *gets) {
        return Response::new(200)
            .body(Body::Trickle { bytes, every })
            .into();
    }
    let from = request
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let (status, body) = match from {
        Some(from) => (206, bytes.get(from..).unwrap_or_default().to_vec()),
        None => (200, bytes),
    };
    let response = Response::new(status).header("Docker-Content-Digest", digest);
    if hostility.blobs_unannounced {
        let (tx, pieces) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let _ = tx.send(body).await;
        });
        return response.body(Body::Stream { pieces, len: None }).into();
    }
    response.body(Body::Bytes(body)).into()
}

fn upload(
    state: &Mutex<State>,
    method: &str,
    name: &str,
    id: &str,
    request: &Request,
    base: &str,
) -> Reply {
    let mut st = state.lock().expect("state");
    let Some(data) = st.uploads.get_mut(id) else {
        return Response::new(404)
            .json(&json!({"errors": [{"code": "BLOB_UPLOAD_UNKNOWN", "message": "unknown"}]}))
            .into();
    };
    data.extend_from_slice(&request.body);
    let len = data.len();
    match method {
        "PATCH" => Response::new(202)
            .header("Location", format!("{base}/v2/{name}/blobs/uploads/{id}"))
            .header("Range", format!("0-{}", len.saturating_sub(1)))
            .into(),
        "PUT" => {
            let bytes = st.uploads.remove(id).unwrap_or_default();
            let digest = Digest::sha256_of(&bytes).to_string();
            if request.query("digest").as_deref() != Some(digest.as_str()) {
                return Response::new(400)
                    .json(&json!({"errors": [{"code": "DIGEST_INVALID", "message": "digest"}]}))
                    .into();
            }
            st.blobs.insert(digest.clone(), bytes);
            Response::new(201)
                .header("Docker-Content-Digest", digest)
                .into()
        }
        "DELETE" => {
            st.uploads.remove(id);
            Response::new(204).into()
        }
        _ => Response::new(204)
            .header("Location", format!("{base}/v2/{name}/blobs/uploads/{id}"))
            .header("Range", format!("0-{}", len.saturating_sub(1)))
            .into(),
    }
}

fn tags(
    state: &Mutex<State>,
    hostility: &Hostility,
    name: &str,
    elsewhere: &str,
    request: &Request,
) -> Reply {
    if let Some(bad) = hostility.tags_body {
        return Response::new(200)
            .header("Content-Type", "application/json")
            .body(bad.body())
            .into();
    }
    let st = state.lock().expect("state");
    let Some(tags) = st.tags.get(name) else {
        return error(404, "NAME_UNKNOWN", hostility);
    };
    let mut r = Response::new(200);
    let here = format!("/v2/{name}/tags/list");
    match hostility.tag_paging {
        Some(TagPaging::Proper(n)) => {
            let after = request.query("last");
            let from = after
                .and_then(|l| tags.iter().position(|t| *t == l).map(|i| i + 1))
                .unwrap_or(0);
            let page: Vec<&String> = tags.iter().skip(from).take(n).collect();
            if from + n < tags.len() {
                if let Some(last) = page.last() {
                    r = r.header("Link", format!("<{here}?last={last}&n={n}>; rel=\"next\""));
                }
            }
            return r.json(&json!({"name": name, "tags": page})).into();
        }
        Some(TagPaging::WholeListWithNext) => {
            r = r.header("Link", format!("<{here}?n=100&last=x>; rel=\"next\""));
        }
        Some(TagPaging::LinkToItself) => {
            r = r.header("Link", format!("<{}>; rel=\"next\"", request.target));
        }
        None => {}
    }
    if hostility.tags_link_elsewhere {
        r = r.header(
            "Link",
            format!("<{elsewhere}/v2/{name}/tags/list?last=zzz&n=1000>; rel=\"next\""),
        );
    }
    r.json(&json!({"name": name, "tags": tags})).into()
}

fn token(state: &Mutex<State>, hostility: &Hostility, request: &Request) -> Reply {
    if let Some(bad) = hostility.token_body {
        return Response::new(200)
            .header("Content-Type", "application/json")
            .body(bad.body())
            .into();
    }
    if let Auth::Bearer { user, password } = &hostility.auth {
        if request.header("authorization") != Some(basic(user, password).as_str()) {
            return Response::new(401)
                .json(&json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}))
                .into();
        }
    }
    let mut st = state.lock().expect("state");
    st.next += 1;
    let token = format!("hostile-token-{}", st.next);
    st.tokens.push(token.clone());
    Response::new(200)
        .json(&json!({"token": token, "expires_in": 300}))
        .into()
}
