//! Files and branches of a repository: a file's text and blob sha at a ref, writing a file on
//! a branch (the contents API), a branch's head, creating or moving a branch.

use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::client::{GithubClient, Method};
use crate::error::GithubError;
use image_mirror_common::config::GithubRepo;

/// A file as a ref holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAtRef {
    /// The text.
    pub text: String,
    /// Its blob sha, which a write must name to replace it.
    pub sha: String,
}

/// What a commit through the contents API did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileWrite {
    /// Committed.
    Written,
    /// The file changed since it was read: read it again and rebuild the change.
    Changed,
}

#[derive(Deserialize)]
struct FileContent {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    sha: String,
}

#[derive(Deserialize)]
struct GitRef {
    object: GitObject,
}

#[derive(Deserialize)]
struct GitObject {
    sha: String,
}

#[derive(Deserialize)]
struct Ignored {}

fn route(repo: &GithubRepo, tail: &str) -> String {
    format!("/repos/{}/{}/{tail}", repo.owner, repo.name)
}

impl GithubClient {
    /// The text and blob sha of `path` in `repo` at `git_ref` (a tag, branch or commit).
    pub async fn file_with_sha(
        &self,
        repo: &GithubRepo,
        path: &str,
        git_ref: &str,
    ) -> Result<FileAtRef, GithubError> {
        let operation = format!("read {path} of {repo} at {git_ref}");
        let route = route(repo, &format!("contents/{}", path.trim_start_matches('/')));
        let file: FileContent = self
            .get_json(&operation, &route, &[("ref", git_ref)])
            .await?;
        let text = decode_content(&file).map_err(|m| GithubError::permanent(&operation, m))?;
        Ok(FileAtRef {
            text,
            sha: file.sha,
        })
    }

    /// The text of `path` in `repo` at `git_ref`.
    pub async fn file_at(
        &self,
        repo: &GithubRepo,
        path: &str,
        git_ref: &str,
    ) -> Result<String, GithubError> {
        Ok(self.file_with_sha(repo, path, git_ref).await?.text)
    }

    /// The commit `branch` points at, or `None` when there is no such branch.
    pub async fn branch_head(
        &self,
        repo: &GithubRepo,
        branch: &str,
    ) -> Result<Option<String>, GithubError> {
        let operation = format!("read branch {branch} of {repo}");
        let route = route(repo, &format!("git/ref/heads/{branch}"));
        let found: Result<GitRef, GithubError> = self.get_json(&operation, &route, &[]).await;
        match found {
            Ok(r) => Ok(Some(r.object.sha)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates `branch` at commit `sha`.
    pub async fn create_branch(
        &self,
        repo: &GithubRepo,
        branch: &str,
        sha: &str,
    ) -> Result<(), GithubError> {
        let operation = format!("create branch {branch} of {repo}");
        let route = route(repo, "git/refs");
        let body = json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
        let _: Ignored = self
            .send_json(Method::Post, &operation, &route, &body)
            .await?;
        Ok(())
    }

    /// Points `branch` at commit `sha`, even when that is not a fast-forward.
    pub async fn reset_branch(
        &self,
        repo: &GithubRepo,
        branch: &str,
        sha: &str,
    ) -> Result<(), GithubError> {
        let operation = format!("move branch {branch} of {repo}");
        let route = route(repo, &format!("git/refs/heads/{branch}"));
        let body = json!({"sha": sha, "force": true});
        let _: Ignored = self
            .send_json(Method::Patch, &operation, &route, &body)
            .await?;
        Ok(())
    }

    /// Commits `text` as `path` on `branch`, replacing the blob `sha`: [`FileWrite::Changed`]
    /// when the file changed since that sha was read (GitHub's 409, or 422).
    pub async fn put_file(
        &self,
        repo: &GithubRepo,
        path: &str,
        branch: &str,
        message: &str,
        text: &str,
        sha: &str,
    ) -> Result<FileWrite, GithubError> {
        let operation = format!("commit {path} on {branch} of {repo}");
        let route = route(repo, &format!("contents/{}", path.trim_start_matches('/')));
        let body = json!({
            "message": message,
            "content": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            "sha": sha,
            "branch": branch,
        });
        let written: Result<Ignored, GithubError> =
            self.send_json(Method::Put, &operation, &route, &body).await;
        match written {
            Ok(_) => Ok(FileWrite::Written),
            Err(e) if matches!(e.status, Some(409 | 422)) => Ok(FileWrite::Changed),
            Err(e) => Err(e),
        }
    }
}

fn decode_content(file: &FileContent) -> Result<String, String> {
    let content = file
        .content
        .as_deref()
        .ok_or("no content in the answer (a folder, or a file over 1 MB)")?;
    match file.encoding.as_deref() {
        Some("base64") | None => {
            let packed: Vec<u8> = content
                .bytes()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(packed)
                .map_err(|e| format!("bad base64 content: {e}"))?;
            String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned())
        }
        Some(other) => Err(format!("unexpected content encoding {other:?}")),
    }
}

/// A file's contents answer, parsed and decoded as [`GithubClient::file_with_sha`] does.
#[cfg(fuzzing)]
pub(crate) fn fuzz_contents(data: &[u8]) {
    if let Ok(file) = super::client::parse::<FileContent>("fuzz", data) {
        let _ = decode_content(&file);
    }
}
