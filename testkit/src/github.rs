//! A stand-in for the parts of the GitHub REST API the committer uses, with state: branches
//! holding one file, commits through the contents API, pull requests and labels. GitHub
//! cannot run here, so this is the one fake of the test suite; it answers as GitHub does
//! (409 on a stale blob sha, 422 on a branch or pull request that exists).

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A commit made through the contents API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The branch written.
    pub branch: String,
    /// The commit message.
    pub message: String,
    /// The file as committed, decoded from the request.
    pub content: String,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// Its number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Head branch.
    pub head: String,
    /// Base branch.
    pub base: String,
    /// Description.
    pub body: String,
    /// Labels added.
    pub labels: Vec<String>,
    /// Closed (merged or not): no longer listed as open.
    pub closed: bool,
}

/// What the fake holds.
#[derive(Debug, Default)]
pub struct State {
    /// Branch -> head commit sha.
    pub heads: HashMap<String, String>,
    /// Commit sha -> the file's content at that commit.
    pub trees: HashMap<String, String>,
    /// Branches created (`POST /git/refs`), in order.
    pub created_branches: Vec<String>,
    /// Branches moved by force (`PATCH /git/refs`), in order.
    pub reset_branches: Vec<String>,
    /// Commits through the contents API, in order.
    pub commits: Vec<Commit>,
    /// Pull requests, in order.
    pub pulls: Vec<Pull>,
    /// When set, right after the base branch's file is next read, this content is committed
    /// to the base branch (as if someone merged a change meanwhile).
    pub base_changes_after_read: Option<String>,
    /// The base branch.
    pub base: String,
    /// When set, a label request is announced here and answered only after a minute.
    pub hold_labels: Option<mpsc::Sender<u64>>,
    commit_counter: u64,
}

impl State {
    fn commit_to(&mut self, branch: &str, content: String) -> String {
        self.commit_counter += 1;
        let sha = hex(&Sha256::digest(
            format!("{branch}\n{}\n{content}", self.commit_counter).as_bytes(),
        ));
        self.trees.insert(sha.clone(), content);
        self.heads.insert(branch.to_owned(), sha.clone());
        sha
    }

    /// The file on `branch`.
    pub fn file(&self, branch: &str) -> Option<&String> {
        self.heads.get(branch).and_then(|sha| self.trees.get(sha))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The git blob sha of a file's content.
fn blob_sha(content: &str) -> String {
    hex(&Sha256::digest(content.as_bytes()))[..40].to_owned()
}

/// A fake GitHub serving one repository whose `path` starts as `content` on `base`.
pub struct FakeGithub {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

struct Api {
    state: Arc<Mutex<State>>,
    owner: String,
    repo: String,
    path: String,
}

impl FakeGithub {
    /// Starts the fake for `owner/repo`.
    pub async fn start(owner: &str, repo: &str, base: &str, path: &str, content: &str) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            base: base.to_owned(),
            ..State::default()
        }));
        state.lock().unwrap().commit_to(base, content.to_owned());
        let api = Api {
            state: Arc::clone(&state),
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            path: path.to_owned(),
        };
        Mock::given(path_regex(format!("^/repos/{owner}/{repo}/")))
            .respond_with(api)
            .mount(&server)
            .await;
        Self { server, state }
    }

    /// The base URL (for `GITHUB_API_URL`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Reads or changes the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Every request received, as `METHOD path?query`.
    pub async fn requests(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let q = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("{} {}{q}", r.method, r.url.path())
            })
            .collect()
    }
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))
}

fn unprocessable(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(422).set_body_json(json!({"message": message}))
}

impl Respond for Api {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let prefix = format!("/repos/{}/{}/", self.owner, self.repo);
        let Some(route) = request.url.path().strip_prefix(&prefix) else {
            return not_found();
        };
        let query: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let mut state = self.state.lock().unwrap();
        let contents = format!("contents/{}", self.path);
        match (request.method.as_str(), route) {
            ("GET", r) if r == contents => state.read_file(query.get("ref")),
            ("PUT", r) if r == contents => state.write_file(&self.path, &body),
            ("GET", r) if r.starts_with("git/ref/heads/") => {
                state.get_ref(&r["git/ref/heads/".len()..])
            }
            ("POST", "git/refs") => state.create_ref(&body),
            ("PATCH", r) if r.starts_with("git/refs/heads/") => {
                state.move_ref(&r["git/refs/heads/".len()..], &body)
            }
            ("GET", "pulls") => state.list_pulls(&self.owner, &self.repo, query.get("head")),
            ("POST", "pulls") => state.open_pull(&body),
            ("POST", r) if r.starts_with("issues/") && r.ends_with("/labels") => {
                let number = r["issues/".len()..r.len() - "/labels".len()].parse();
                state.add_labels(number.unwrap_or(0), &body)
            }
            _ => not_found(),
        }
    }
}

fn text(body: &Value, key: &str) -> String {
    body[key].as_str().unwrap_or_default().to_owned()
}

/// The routes, one per method and path.
impl State {
    fn read_file(&mut self, branch: Option<&String>) -> ResponseTemplate {
        let branch = branch.cloned().unwrap_or_else(|| self.base.clone());
        let answer = match self.file(&branch) {
            Some(text) => ResponseTemplate::new(200).set_body_json(json!({
                "type": "file",
                "encoding": "base64",
                "sha": blob_sha(text),
                "content": base64::engine::general_purpose::STANDARD.encode(text),
            })),
            None => return not_found(),
        };
        if branch == self.base {
            if let Some(changed) = self.base_changes_after_read.take() {
                let base = self.base.clone();
                self.commit_to(&base, changed);
            }
        }
        answer
    }

    fn write_file(&mut self, path: &str, body: &Value) -> ResponseTemplate {
        let branch = text(body, "branch");
        let Some(current) = self.file(&branch).cloned() else {
            return not_found();
        };
        if body["sha"].as_str() != Some(blob_sha(&current).as_str()) {
            return ResponseTemplate::new(409).set_body_json(json!({
                "message": format!("{path} does not match {}", blob_sha(&current))
            }));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text(body, "content"))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        self.commits.push(Commit {
            branch: branch.clone(),
            message: text(body, "message"),
            content: decoded.clone(),
        });
        let sha = self.commit_to(&branch, decoded.clone());
        ResponseTemplate::new(200).set_body_json(json!({
            "content": {"sha": blob_sha(&decoded)},
            "commit": {"sha": sha},
        }))
    }

    fn get_ref(&self, branch: &str) -> ResponseTemplate {
        match self.heads.get(branch) {
            Some(sha) => ResponseTemplate::new(200).set_body_json(json!({
                "ref": format!("refs/heads/{branch}"),
                "object": {"sha": sha, "type": "commit"},
            })),
            None => not_found(),
        }
    }

    fn create_ref(&mut self, body: &Value) -> ResponseTemplate {
        let name = text(body, "ref");
        let Some(branch) = name.strip_prefix("refs/heads/") else {
            return unprocessable("Reference name is invalid");
        };
        if self.heads.contains_key(branch) {
            return unprocessable("Reference already exists");
        }
        let sha = text(body, "sha");
        if !self.trees.contains_key(&sha) {
            return unprocessable("Object does not exist");
        }
        self.heads.insert(branch.to_owned(), sha.clone());
        self.created_branches.push(branch.to_owned());
        ResponseTemplate::new(201).set_body_json(json!({
            "ref": name, "object": {"sha": sha, "type": "commit"}
        }))
    }

    fn move_ref(&mut self, branch: &str, body: &Value) -> ResponseTemplate {
        let sha = text(body, "sha");
        if !self.heads.contains_key(branch) || !self.trees.contains_key(&sha) {
            return unprocessable("Reference does not exist");
        }
        self.heads.insert(branch.to_owned(), sha.clone());
        self.reset_branches.push(branch.to_owned());
        ResponseTemplate::new(200).set_body_json(json!({"object": {"sha": sha}}))
    }

    fn list_pulls(&self, owner: &str, repo: &str, head: Option<&String>) -> ResponseTemplate {
        let open: Vec<Value> = self
            .pulls
            .iter()
            .filter(|p| !p.closed)
            .filter(|p| head.is_none_or(|h| *h == format!("{owner}:{}", p.head)))
            .map(|p| {
                json!({
                    "number": p.number,
                    "html_url": format!("https://github.example/pull/{}", p.number),
                    "head": {"ref": p.head, "repo": {"full_name": format!("{owner}/{repo}")}},
                })
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(open)
    }

    fn open_pull(&mut self, body: &Value) -> ResponseTemplate {
        let head = text(body, "head");
        if !self.heads.contains_key(&head) {
            return unprocessable("head does not exist");
        }
        if self.pulls.iter().any(|p| p.head == head && !p.closed) {
            return unprocessable("A pull request already exists");
        }
        let number = self.pulls.len() as u64 + 1;
        self.pulls.push(Pull {
            number,
            title: text(body, "title"),
            head,
            base: text(body, "base"),
            body: text(body, "body"),
            labels: Vec::new(),
            closed: false,
        });
        ResponseTemplate::new(201).set_body_json(json!({
            "number": number,
            "html_url": format!("https://github.example/pull/{number}"),
        }))
    }

    fn add_labels(&mut self, number: u64, body: &Value) -> ResponseTemplate {
        let labels: Vec<String> = body["labels"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(pull) = self.pulls.iter_mut().find(|p| p.number == number) {
            for l in &labels {
                if !pull.labels.contains(l) {
                    pull.labels.push(l.clone());
                }
            }
        }
        let answer = ResponseTemplate::new(200).set_body_json(
            labels
                .iter()
                .map(|l| json!({"name": l}))
                .collect::<Vec<_>>(),
        );
        match &self.hold_labels {
            Some(tx) => {
                let _ = tx.send(number);
                answer.set_delay(Duration::from_secs(60))
            }
            None => answer,
        }
    }
}
