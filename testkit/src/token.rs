//! Token auth as Docker Hub, GHCR and Quay speak it, for a real `docker-registry` configured
//! with `auth: token`: a token server that signs RS256 JWTs with a certificate of its own
//! (made with the `openssl` command line, sent in the `x5c` header, trusted by the registry's
//! `rootcertbundle`), grants scopes by a per-test policy, sets `expires_in`, counts what it is
//! asked, and can be told to refuse or to answer slowly.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

use crate::http::{Reply, Request, Response, Server};
use crate::tls::openssl;

/// The `service` the registry and the tokens name.
pub const SERVICE: &str = "image-mirror-test-registry";
/// The issuer the registry trusts.
pub const ISSUER: &str = "image-mirror-test-token-server";

/// Who gets what.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The one user (name, password); a request with other credentials is refused.
    pub user: (String, String),
    /// Repositories the user may not push to.
    pub no_push: HashSet<String>,
    /// Repositories the user may not pull from.
    pub no_pull: HashSet<String>,
    /// Lifetime of each token, in seconds.
    pub expires_in: u64,
}

impl Policy {
    /// `user` with `password`, everything granted, tokens for five minutes.
    pub fn user(user: &str, password: &str) -> Self {
        Self {
            user: (user.to_owned(), password.to_owned()),
            no_push: HashSet::new(),
            no_pull: HashSet::new(),
            expires_in: 300,
        }
    }
}

/// What a token request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The user, when credentials came.
    pub user: Option<String>,
    /// The `scope` values, in order.
    pub scopes: Vec<String>,
}

struct State {
    policy: Mutex<Policy>,
    asked: Mutex<Vec<Asked>>,
    refuse: Mutex<Option<u16>>,
    fail_next: AtomicU64,
    slow: Mutex<Option<Duration>>,
    issued: AtomicU64,
    key: PathBuf,
    x5c: String,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    server: Server,
    state: Arc<State>,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Starts a token server granting by `policy`.
    pub fn start(policy: Policy) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (key, cert) = (dir.path().join("token.key"), dir.path().join("token.pem"));
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=image-mirror test token issuer",
                "-keyout",
                "token.key",
                "-out",
                "token.pem",
            ],
        );
        openssl(
            dir.path(),
            &[
                "x509",
                "-in",
                "token.pem",
                "-outform",
                "DER",
                "-out",
                "token.der",
            ],
        );
        let der = std::fs::read(dir.path().join("token.der")).expect("read the certificate");
        let state = Arc::new(State {
            policy: Mutex::new(policy),
            asked: Mutex::default(),
            refuse: Mutex::default(),
            fail_next: AtomicU64::new(0),
            slow: Mutex::default(),
            issued: AtomicU64::new(0),
            key,
            x5c: base64::engine::general_purpose::STANDARD.encode(der),
        });
        let s = Arc::clone(&state);
        let server = Server::start(move |request| {
            let state = Arc::clone(&s);
            Box::pin(async move {
                let slow = *state.slow.lock().expect("slow");
                if let Some(pause) = slow {
                    tokio::time::sleep(pause).await;
                }
                tokio::task::spawn_blocking(move || answer(&state, &request))
                    .await
                    .unwrap_or(Reply::Close)
            })
        });
        Self {
            server,
            state,
            cert,
            _dir: dir,
        }
    }

    /// The realm: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.server.url())
    }

    /// `127.0.0.1:PORT` (to list as insecure).
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// The certificate the registry must trust.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// Every token request so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.state.asked.lock().expect("asked").clone()
    }

    /// Every request the token server has had, with when it came.
    pub fn requests(&self) -> Vec<crate::http::Logged> {
        self.server.requests()
    }

    /// Tokens handed out.
    pub fn issued(&self) -> u64 {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Answers every request with `status` from now on (`None`: grant again).
    pub fn refuse(&self, status: Option<u16>) {
        *self.state.refuse.lock().expect("refuse") = status;
    }

    /// Answers the next `n` requests with 503.
    pub fn fail_next(&self, n: u64) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Waits this long before each answer from now on.
    pub fn slow(&self, pause: Option<Duration>) {
        *self.state.slow.lock().expect("slow") = pause;
    }

    /// Changes the policy.
    pub fn policy(&self, change: impl FnOnce(&mut Policy)) {
        change(&mut self.state.policy.lock().expect("policy"));
    }
}

fn answer(state: &State, request: &Request) -> Reply {
    if request.path() != "/token" {
        return Response::new(404).into();
    }
    let scopes: Vec<String> = reqwest::Url::parse(&format!("http://x{}", request.target))
        .map(|u| {
            u.query_pairs()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default();
    let policy = state.policy.lock().expect("policy").clone();
    let user = match request.header("authorization") {
        None => None,
        Some(given) => {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", policy.user.0, policy.user.1))
            );
            if given != expected {
                return Response::new(401)
                    .json(&json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}))
                    .into();
            }
            Some(policy.user.0.clone())
        }
    };
    state.asked.lock().expect("asked").push(Asked {
        user: user.clone(),
        scopes: scopes.clone(),
    });
    let failing = state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return Response::new(503).into();
    }
    if let Some(status) = *state.refuse.lock().expect("refuse") {
        return Response::new(status)
            .json(&json!({"errors": [{"code": "DENIED", "message": "the token server says no"}]}))
            .into();
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| grant(&policy, user.is_some(), s))
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let claims = json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": SERVICE,
        "exp": now + policy.expires_in,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("token-{n}"),
        "access": access,
    });
    let token = sign(state, &claims);
    Response::new(200)
        .json(&json!({"token": token, "access_token": token, "expires_in": policy.expires_in}))
        .into()
}

/// The access a `repository:NAME:ACTIONS` scope gets under `policy`.
fn grant(policy: &Policy, authenticated: bool, scope: &str) -> Option<serde_json::Value> {
    let mut parts = scope.splitn(3, ':');
    let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
    let granted: Vec<&str> = actions
        .split(',')
        .filter(|a| match *a {
            "pull" => !policy.no_pull.contains(name),
            "push" => authenticated && !policy.no_push.contains(name),
            _ => false,
        })
        .collect();
    Some(json!({"type": kind, "name": name, "actions": granted}))
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 JWT over `claims`, with the certificate in `x5c`.
fn sign(state: &State, claims: &serde_json::Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [state.x5c]});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&state.key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())?;
            child.wait_with_output()
        })
        .expect("openssl signs");
    format!("{input}.{}", b64url(&out.stdout))
}
