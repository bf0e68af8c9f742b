//! Releases of a GitHub repository (every page) and the latest one.

use serde::Deserialize;

use crate::client::GithubClient;
use crate::error::GithubError;
use image_mirror_common::config::GithubRepo;

/// The fields of a release that tag discovery reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Release {
    /// The release's git tag.
    pub tag_name: String,
    /// Not yet published.
    #[serde(default)]
    pub draft: bool,
    /// Marked as a pre-release.
    #[serde(default)]
    pub prerelease: bool,
}

/// A bound on pages, for an API that keeps sending `next` links.
const MAX_PAGES: usize = 1000;

impl GithubClient {
    /// Every release of `repo`, following the pages GitHub links.
    pub async fn releases(&self, repo: &GithubRepo) -> Result<Vec<Release>, GithubError> {
        let operation = format!("list releases of {repo}");
        let route = format!("/repos/{}/{}/releases", repo.owner, repo.name);
        self.get_pages(&operation, &route, &[("per_page", "100")], MAX_PAGES)
            .await
    }

    /// The tag of the release GitHub marks as latest.
    pub async fn latest_release(&self, repo: &GithubRepo) -> Result<Release, GithubError> {
        let operation = format!("get the latest release of {repo}");
        let route = format!("/repos/{}/{}/releases/latest", repo.owner, repo.name);
        self.get_json(&operation, &route, &[]).await
    }
}
