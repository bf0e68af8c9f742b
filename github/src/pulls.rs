//! Pull requests: the open one for a branch, opening one, labelling it.

use serde::Deserialize;
use serde_json::json;

use crate::client::{GithubClient, Method};
use crate::error::GithubError;
use image_mirror_common::config::GithubRepo;

/// A pull request, as far as the committer cares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Its page.
    #[serde(default)]
    pub html_url: Option<String>,
}

/// An open pull request and the branch it proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPull {
    /// Its number.
    pub number: u64,
    /// Its head branch (in the repository itself).
    pub branch: String,
}

#[derive(Deserialize)]
struct ListedPull {
    number: u64,
    head: Head,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    branch: String,
    repo: Option<HeadRepo>,
}

#[derive(Deserialize)]
struct HeadRepo {
    full_name: String,
}

/// What opening a pull request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullCreated {
    /// Opened.
    Opened(PullRequest),
    /// One from the same branch is open already (GitHub's 422).
    AlreadyOpen,
}

/// A bound on pages of open pull requests.
const MAX_PULL_PAGES: usize = 100;

/// A new pull request.
#[derive(Debug, Clone)]
pub struct NewPullRequest<'a> {
    /// The title.
    pub title: &'a str,
    /// The branch with the change.
    pub head: &'a str,
    /// The branch it goes into.
    pub base: &'a str,
    /// The description.
    pub body: &'a str,
}

impl GithubClient {
    /// The open pull request from `branch` of `repo` itself, if there is one.
    pub async fn open_pull_for(
        &self,
        repo: &GithubRepo,
        branch: &str,
    ) -> Result<Option<PullRequest>, GithubError> {
        let operation = format!("look for a pull request from {branch} of {repo}");
        let route = format!("/repos/{}/{}/pulls", repo.owner, repo.name);
        let head = format!("{}:{branch}", repo.owner);
        let pulls: Vec<PullRequest> = self
            .get_json(
                &operation,
                &route,
                &[("head", head.as_str()), ("state", "open")],
            )
            .await?;
        Ok(pulls.into_iter().next())
    }

    /// The open pull requests whose head branch is in `repo` itself and starts with `prefix`.
    pub async fn open_pulls_from(
        &self,
        repo: &GithubRepo,
        prefix: &str,
    ) -> Result<Vec<OpenPull>, GithubError> {
        let operation = format!("list the open pull requests of {repo}");
        let route = format!("/repos/{}/{}/pulls", repo.owner, repo.name);
        let listed: Vec<ListedPull> = self
            .get_pages(
                &operation,
                &route,
                &[("state", "open"), ("per_page", "100")],
                MAX_PULL_PAGES,
            )
            .await?;
        let own = repo.to_string();
        Ok(listed
            .into_iter()
            .filter(|p| {
                p.head.branch.starts_with(prefix)
                    && p.head.repo.as_ref().is_some_and(|r| r.full_name == own)
            })
            .map(|p| OpenPull {
                number: p.number,
                branch: p.head.branch,
            })
            .collect())
    }

    /// Opens a pull request; [`PullCreated::AlreadyOpen`] when one from its branch is open.
    pub async fn create_pull(
        &self,
        repo: &GithubRepo,
        pull: &NewPullRequest<'_>,
    ) -> Result<PullCreated, GithubError> {
        let operation = format!("open a pull request from {} of {repo}", pull.head);
        let route = format!("/repos/{}/{}/pulls", repo.owner, repo.name);
        let body = json!({
            "title": pull.title,
            "head": pull.head,
            "base": pull.base,
            "body": pull.body,
        });
        match self
            .send_json(Method::Post, &operation, &route, &body)
            .await
        {
            Ok(pr) => Ok(PullCreated::Opened(pr)),
            Err(e) if e.status == Some(422) => Ok(PullCreated::AlreadyOpen),
            Err(e) => Err(e),
        }
    }

    /// Adds `labels` to issue or pull request `number`.
    pub async fn add_labels(
        &self,
        repo: &GithubRepo,
        number: u64,
        labels: &[&str],
    ) -> Result<(), GithubError> {
        let operation = format!("label pull request #{number} of {repo}");
        let route = format!("/repos/{}/{}/issues/{number}/labels", repo.owner, repo.name);
        let body = json!({ "labels": labels });
        let _: Vec<serde_json::Value> = self
            .send_json(Method::Post, &operation, &route, &body)
            .await?;
        Ok(())
    }
}
