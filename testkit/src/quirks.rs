//! Registry profiles for the [`front`](crate::front): each makes a real registry behind the
//! front behave as a production registry is publicly reported to behave, where no such
//! registry can run here. Each names its source.
//!
//! A registry in read-only mode needs no front: distribution's own maintenance mode does it
//! (`RegistryOptions::read_only`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::json;

use crate::http::{Reply, Request, Response};

const MIB: u64 = 1024 * 1024;

/// How a registry differs from distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// GHCR refuses a request body over 4 MiB: `416 REQUESTED_RANGE_NOT_SATISFIABLE` "the
    /// request body is too large and exceeds the maximum permissible limit of 4.00MiB"
    /// (wasmCloud/wash-archive#268, ocx-sh/ocx#237, oras-project/rust-oci-client#37).
    Ghcr,
    /// ECR answers a `PATCH` with `201` (regclient's `scheme/reg/blob.go` accepts it); its
    /// `Range` stays at the end of a session's first `PATCH` although every chunk is stored
    /// (aws/containers-roadmap#2831); it wants parts other than the last of at least 5 MiB
    /// (its multipart storage); it answers a mount with `202` and a new session.
    Ecr,
    /// ACR: after a cut, the upload session is dead: its status and `PATCH`es answer `404
    /// BLOB_UPLOAD_INVALID` (Azure/azure-sdk-for-js#25448). The front cuts the connection of
    /// the first `PATCH` whose bytes reach `cut_at` into a blob.
    Acr {
        /// Where in a blob the cut falls.
        cut_at: u64,
    },
    /// Harbor answers a mount of a blob that the source repository's manifests do not
    /// reference with `202` and a new session (goharbor/harbor#17097).
    Harbor,
    /// A registry that sets `OCI-Chunk-Min-Length` on the upload `POST` (distribution-spec
    /// v1.1) and refuses a smaller chunk that is not the last.
    ChunkMin(u64),
}

/// What a profile remembers of the sessions it has seen.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// ECR: the `Range` of each session's first `PATCH`.
    first_range: Mutex<HashMap<String, String>>,
    /// The length of each session's last `PATCH` (for the part minimum).
    last_part: Mutex<HashMap<String, u64>>,
    /// ACR: sessions killed by a cut.
    dead: Mutex<HashSet<String>>,
    /// ACR: whether the cut has been made.
    cut: Mutex<bool>,
    /// Requests the profile refused (too large, a part too small, a dead session).
    pub(crate) refused: std::sync::atomic::AtomicU64,
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Response::new(status)
        .json(&json!({"errors": [{"code": code, "message": message}]}))
        .into()
}

/// The session path of an upload request (`/v2/NAME/blobs/uploads/UUID`), when it is one.
fn session(request: &Request) -> Option<String> {
    let path = request.path();
    let (_, uuid) = path.split_once("/blobs/uploads/")?;
    (!uuid.is_empty()).then(|| path.to_owned())
}

fn content_range(request: &Request) -> Option<(u64, u64)> {
    let (start, end) = request.header("content-range")?.split_once('-')?;
    Some((start.trim().parse().ok()?, end.trim().parse().ok()?))
}

impl Sessions {
    /// Before the request is forwarded: an answer of the profile's own, or `None` to forward
    /// (the request may have been changed).
    pub(crate) fn before(&self, quirk: Quirk, request: &mut Request) -> Option<Reply> {
        let reply = self.answer(quirk, request);
        if let Some(Reply::Send(_)) = &reply {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        reply
    }

    fn answer(&self, quirk: Quirk, request: &mut Request) -> Option<Reply> {
        let session = session(request);
        match quirk {
            Quirk::Ghcr if request.body.len() as u64 > 4 * MIB => Some(error(
                416,
                "REQUESTED_RANGE_NOT_SATISFIABLE",
                "the request body is too large and exceeds the maximum permissible limit of 4.00MiB",
            )),
            Quirk::Ecr | Quirk::Harbor if is_mount(request) => {
                // A new session instead of the mount.
                request.target = request.path().to_owned();
                None
            }
            Quirk::Ecr => self.part_minimum(request, session.as_deref(), 5 * MIB),
            Quirk::ChunkMin(min) => self.part_minimum(request, session.as_deref(), min),
            Quirk::Acr { cut_at } => self.acr(request, session, cut_at),
            _ => None,
        }
    }

    /// After the registry answered: the answer as the profile's registry gives it.
    pub(crate) fn after(
        &self,
        quirk: Quirk,
        method: &str,
        session: Option<&str>,
        mut response: Response,
    ) -> Response {
        match (quirk, method) {
            (Quirk::Ecr, "PATCH") if response.status == 202 => {
                response.status = 201;
                self.stale_range(session, &mut response, true);
            }
            (Quirk::Ecr, "GET") => self.stale_range(session, &mut response, false),
            (Quirk::ChunkMin(min), "POST") if response.status == 202 => {
                response = response.header("OCI-Chunk-Min-Length", min.to_string());
            }
            _ => {}
        }
        response
    }

    /// Refuses a `PATCH` that follows a part smaller than `min` in the same session.
    fn part_minimum(&self, request: &Request, session: Option<&str>, min: u64) -> Option<Reply> {
        let session = session?;
        let mut parts = self.last_part.lock().expect("parts");
        let previous = parts.get(session).copied();
        let kind = request.method.as_str();
        if kind == "PATCH" {
            parts.insert(session.to_owned(), request.body.len() as u64);
        }
        match previous {
            Some(len) if len < min && (kind == "PATCH" || !request.body.is_empty()) => Some(error(
                416,
                "SIZE_INVALID",
                &format!(
                    "a part other than the last is {len} bytes; parts must be at least {min} bytes"
                ),
            )),
            _ => None,
        }
    }

    /// ACR: cuts the first `PATCH` that reaches `cut_at`, and kills its session.
    fn acr(&self, request: &Request, session: Option<String>, cut_at: u64) -> Option<Reply> {
        let session = session?;
        if self.dead.lock().expect("dead").contains(&session) {
            return Some(error(404, "BLOB_UPLOAD_INVALID", "blob upload invalid"));
        }
        let (start, end) = content_range(request)?;
        let mut cut = self.cut.lock().expect("cut");
        if request.method == "PATCH" && !*cut && start < cut_at && cut_at <= end + 1 {
            *cut = true;
            self.dead.lock().expect("dead").insert(session);
            return Some(Reply::Close);
        }
        None
    }

    /// ECR's `Range`: the first `PATCH` of a session sets it, and it stays there.
    fn stale_range(&self, session: Option<&str>, response: &mut Response, record: bool) {
        let Some(session) = session else { return };
        let mut first = self.first_range.lock().expect("ranges");
        let at = response
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("range"));
        let Some(at) = at else { return };
        match first.get(session) {
            Some(stale) => response.headers[at].1 = stale.clone(),
            None if record => {
                first.insert(session.to_owned(), response.headers[at].1.clone());
            }
            None => {}
        }
    }
}

/// The session a request belongs to, for [`Sessions::after`].
pub(crate) fn session_of(request: &Request) -> Option<String> {
    session(request)
}

fn is_mount(request: &Request) -> bool {
    request.method == "POST" && request.query("mount").is_some()
}
