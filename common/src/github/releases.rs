//! Releases of a GitHub repository (every page) and the latest one.

use octocrab::Page;
use serde::Deserialize;

use crate::config::GithubRepo;
use crate::github::client::GithubClient;
use crate::github::error::GithubError;

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
        let mut page: Page<Release> = self
            .get_json(&operation, &route, Some(&[("per_page", "100")]))
            .await?;
        let mut releases = page.take_items();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let Some(next) = page.next.clone() else {
                break;
            };
            if !seen.insert(next.to_string()) {
                break;
            }
            let found: Option<Page<Release>> = self
                .with_retries(|| async {
                    self.octocrab()
                        .get_page(&Some(next.clone()))
                        .await
                        .map_err(|e| GithubError::from_octocrab(&operation, &e))
                })
                .await?;
            let Some(mut next_page) = found else {
                break;
            };
            releases.append(&mut next_page.take_items());
            page = next_page;
        }
        Ok(releases)
    }

    /// The tag of the release GitHub marks as latest.
    pub async fn latest_release(&self, repo: &GithubRepo) -> Result<Release, GithubError> {
        let operation = format!("get the latest release of {repo}");
        let route = format!("/repos/{}/{}/releases/latest", repo.owner, repo.name);
        self.get_json(&operation, &route, None::<&()>).await
    }
}
