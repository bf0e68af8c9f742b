//! A front in front of a real registry, as production registries sit behind one: it takes each
//! request whole before forwarding it (request buffering, as nginx does by default, so a cut
//! request never reaches the registry), keeps the registry's `Location`s on itself (the
//! `Host` header is passed through), and can add what real fronts add:
//!
//! - latency: a pause before each request is forwarded (a round trip on a slow link);
//! - metering in Docker Hub's style: every manifest `GET` is a pull, every manifest answer
//!   (`HEAD` included) carries `ratelimit-limit` and `ratelimit-remaining` (`N;w=SECONDS`), a
//!   `GET` past the quota gets `429 TOOMANYREQUESTS` without `Retry-After`, and the quota comes
//!   back when the window (counted from the first pull) has passed;
//! - a hook that sees each request first, to tamper with the registry or answer by itself;
//! - a registry profile ([`Quirk`]): GHCR's, ECR's, ACR's, Harbor's ways of answering uploads.
//!
//! It counts what it carries: pulls, HEADs, refusals, the request body bytes it took and
//! those it sent up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http::{Body, Logged, Reply, Request, Response, Server};
use crate::quirks::{session_of, Quirk, Sessions};

/// Docker Hub's limit: `limit` pulls per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Pulls per window.
    pub limit: u64,
    /// The window.
    pub window: Duration,
}

/// A hook: sees each request before it is forwarded; an answer it gives is sent instead.
pub type Hook = Arc<dyn Fn(&Request) -> Option<Reply> + Send + Sync>;

/// What the front adds.
#[derive(Clone, Default)]
pub struct FrontOptions {
    /// A pause before each request is forwarded.
    pub latency: Option<Duration>,
    /// Docker Hub-style metering.
    pub quota: Option<Quota>,
    /// Sees each request first.
    pub hook: Option<Hook>,
    /// Answers uploads as this registry does.
    pub quirk: Option<Quirk>,
    /// Forwards each request, but closes the connection instead of answering the ones this
    /// says to: the registry did the work and the client never hears of it (an answer lost
    /// to a cut).
    pub lose_answer: Option<LoseAnswer>,
}

/// Which forwarded requests' answers a front loses.
pub type LoseAnswer = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

impl FrontOptions {
    /// A front with the profile of a registry.
    pub fn quirk(quirk: Quirk) -> Self {
        Self {
            quirk: Some(quirk),
            ..Self::default()
        }
    }
}

#[derive(Default)]
struct Meter {
    pulls: AtomicU64,
    heads: AtomicU64,
    refused: AtomicU64,
    bytes_up: AtomicU64,
    bytes_taken: AtomicU64,
    bytes_down: Arc<AtomicU64>,
    sessions: Sessions,
    window: Mutex<Option<(Instant, u64)>>,
}

impl Meter {
    /// Takes a pull from the quota: `Ok(remaining)` or `Err(())` when spent.
    fn take(&self, quota: Quota) -> Result<u64, ()> {
        let mut w = self.window.lock().expect("window");
        let now = Instant::now();
        let (start, used) = match *w {
            Some((start, used)) if now.duration_since(start) < quota.window => (start, used),
            _ => (now, 0),
        };
        if used >= quota.limit {
            *w = Some((start, used));
            return Err(());
        }
        *w = Some((start, used + 1));
        Ok(quota.limit - used - 1)
    }

    /// What is left without taking any.
    fn remaining(&self, quota: Quota) -> u64 {
        let w = self.window.lock().expect("window");
        match *w {
            Some((start, used)) if start.elapsed() < quota.window => {
                quota.limit.saturating_sub(used)
            }
            _ => quota.limit,
        }
    }
}

/// A running front; stops when dropped.
pub struct Front {
    server: Server,
    meter: Arc<Meter>,
}

impl Front {
    /// Starts a front before the registry at `upstream` (`127.0.0.1:PORT`, plain HTTP).
    pub fn start(upstream: &str, options: FrontOptions) -> Self {
        let meter = Arc::new(Meter::default());
        let upstream = format!("http://{upstream}");
        let client: Arc<OnceLock<reqwest::Client>> = Arc::default();
        let m = Arc::clone(&meter);
        let server = Server::start(move |request| {
            let (meter, options, upstream, client) = (
                Arc::clone(&m),
                options.clone(),
                upstream.clone(),
                Arc::clone(&client),
            );
            Box::pin(async move {
                let http = client.get_or_init(|| {
                    reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .expect("front client")
                });
                front(&meter, &options, &upstream, http, request).await
            })
        });
        Self { server, meter }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Manifest `GET`s answered (pulls, as Docker Hub counts them).
    pub fn pulls(&self) -> u64 {
        self.meter.pulls.load(Ordering::SeqCst)
    }

    /// Manifest `HEAD`s answered.
    pub fn heads(&self) -> u64 {
        self.meter.heads.load(Ordering::SeqCst)
    }

    /// Requests refused with 429 (the quota was spent).
    pub fn refused(&self) -> u64 {
        self.meter.refused.load(Ordering::SeqCst)
    }

    /// Request body bytes forwarded to the registry.
    pub fn bytes_up(&self) -> u64 {
        self.meter.bytes_up.load(Ordering::SeqCst)
    }

    /// Requests the registry profile refused by itself (too large, a part too small, a dead
    /// session).
    pub fn quirk_refusals(&self) -> u64 {
        self.meter.sessions.refused.load(Ordering::SeqCst)
    }

    /// Request body bytes clients sent to the front, forwarded or not (a request the
    /// profile refused or cut counts too).
    pub fn bytes_taken(&self) -> u64 {
        self.meter.bytes_taken.load(Ordering::SeqCst)
    }

    /// Spends `n` pulls of the quota, as another client would: `n` GETs of `repo:tag`.
    pub async fn spend(&self, repo: &str, tag: &str, n: usize) {
        let http = reqwest::Client::new();
        for _ in 0..n {
            let r = http
                .get(format!("{}/v2/{repo}/manifests/{tag}", self.server.url()))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .expect("GET through the front");
            assert_eq!(r.status(), 200, "spending the quota");
        }
    }

    /// Response body bytes sent back to clients.
    pub fn bytes_down(&self) -> u64 {
        self.meter.bytes_down.load(Ordering::SeqCst)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.server.requests()
    }
}

fn is_manifest(request: &Request) -> bool {
    request.path().starts_with("/v2/") && request.path().contains("/manifests/")
}

async fn front(
    meter: &Meter,
    options: &FrontOptions,
    upstream: &str,
    http: &reqwest::Client,
    mut request: Request,
) -> Reply {
    meter
        .bytes_taken
        .fetch_add(request.body.len() as u64, Ordering::SeqCst);
    if let Some(pause) = options.latency {
        tokio::time::sleep(pause).await;
    }
    if let Some(reply) = options.hook.as_ref().and_then(|h| h(&request)) {
        return reply;
    }
    let lost = options
        .lose_answer
        .as_ref()
        .is_some_and(|lose| lose(&request));
    let (method, session) = (request.method.clone(), session_of(&request));
    if let Some(quirk) = options.quirk {
        if let Some(reply) = meter.sessions.before(quirk, &mut request) {
            return reply;
        }
    }
    let manifest = is_manifest(&request);
    let mut rate_headers = Vec::new();
    if let (Some(quota), true) = (options.quota, manifest) {
        let window = quota.window.as_secs();
        let remaining = if request.method == "GET" {
            match meter.take(quota) {
                Ok(left) => left,
                Err(()) => {
                    meter.refused.fetch_add(1, Ordering::SeqCst);
                    return Response::new(429)
                        .header("ratelimit-limit", format!("{};w={window}", quota.limit))
                        .header("ratelimit-remaining", format!("0;w={window}"))
                        .json(&json!({"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}))
                        .into();
                }
            }
        } else {
            meter.remaining(quota)
        };
        rate_headers.push(("ratelimit-limit", format!("{};w={window}", quota.limit)));
        rate_headers.push(("ratelimit-remaining", format!("{remaining};w={window}")));
    }
    match (request.method.as_str(), manifest) {
        ("GET", true) => {
            meter.pulls.fetch_add(1, Ordering::SeqCst);
        }
        ("HEAD", true) => {
            meter.heads.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    }
    meter
        .bytes_up
        .fetch_add(request.body.len() as u64, Ordering::SeqCst);
    let mut response = match forward(http, upstream, request, Arc::clone(&meter.bytes_down)).await {
        Ok(r) => r,
        Err(e) => return Response::new(502).body(Body::Bytes(e.into_bytes())).into(),
    };
    if lost {
        return Reply::Close;
    }
    for (name, value) in rate_headers {
        response = response.header(name, value);
    }
    if let Some(quirk) = options.quirk {
        response = meter
            .sessions
            .after(quirk, &method, session.as_deref(), response);
    }
    response.into()
}

const HOP_BY_HOP: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    request: Request,
    bytes_down: Arc<AtomicU64>,
) -> Result<Response, String> {
    let method =
        reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = http.request(method, format!("{upstream}{}", request.target));
    for (name, value) in &request.headers {
        if !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let upstream_response = builder
        .body(request.body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Response::new(upstream_response.status().as_u16());
    for (name, value) in upstream_response.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            response = response.header(name.as_str(), v);
        }
    }
    let len = upstream_response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (tx, pieces) = tokio::sync::mpsc::channel(4);
    let mut body = upstream_response;
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = body.chunk().await {
            bytes_down.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            if tx.send(chunk.to_vec()).await.is_err() {
                break;
            }
        }
    });
    Ok(response.body(Body::Stream { pieces, len }))
}

/// What [`hold_chunk_from`] saw: the start of the chunk it held (sent once), and when each
/// request came.
pub struct HeldChunk {
    /// The start offset of the held chunk, once it came.
    pub held: std::sync::mpsc::Receiver<u64>,
    /// Every request: when it came, its method and target.
    pub seen: Arc<Mutex<Vec<(Instant, String, String)>>>,
}

/// A hook that holds (never forwards, never answers) the first upload chunk (`PATCH`)
/// starting at or past `offset`: the front has taken it whole, the registry never sees it, as
/// when a worker dies behind a request-buffering front while its chunk is in flight.
pub fn hold_chunk_from(offset: u64) -> (Hook, HeldChunk) {
    let (tx, held) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let done = std::sync::atomic::AtomicBool::new(false);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let hook: Hook = Arc::new(move |request| {
        log.lock().expect("log").push((
            Instant::now(),
            request.method.clone(),
            request.target.clone(),
        ));
        let start = request
            .header("content-range")
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())?;
        if request.method == "PATCH" && start >= offset && !done.swap(true, Ordering::SeqCst) {
            let _ = tx.lock().expect("sender").send(start);
            return Some(Reply::Hang);
        }
        None
    });
    (hook, HeldChunk { held, seen })
}
