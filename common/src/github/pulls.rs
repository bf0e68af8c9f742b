//! Pull requests: the open one for a branch, opening one, labelling it.

use serde::Deserialize;
use serde_json::json;

use crate::config::GithubRepo;
use crate::github::client::{GithubClient, Method};
use crate::github::error::GithubError;

/// A pull request, as far as the committer cares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Its page.
    #[serde(default)]
    pub html_url: Option<String>,
}

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

    /// Opens a pull request.
    pub async fn create_pull(
        &self,
        repo: &GithubRepo,
        pull: &NewPullRequest<'_>,
    ) -> Result<PullRequest, GithubError> {
        let operation = format!("open a pull request from {} of {repo}", pull.head);
        let route = format!("/repos/{}/{}/pulls", repo.owner, repo.name);
        let body = json!({
            "title": pull.title,
            "head": pull.head,
            "base": pull.base,
            "body": pull.body,
        });
        self.send_json(Method::Post, &operation, &route, &body)
            .await
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
