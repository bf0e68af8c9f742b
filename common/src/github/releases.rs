//! Releases of a GitHub repository (every page), the latest one, and a file at a tag.

use base64::Engine;
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

#[derive(Deserialize)]
struct FileContent {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

/// A bound on pages, for an API that keeps sending `next` links.
const MAX_PAGES: usize = 1000;

impl GithubClient {
    /// Every release of `repo`, following the pages GitHub links.
    pub async fn releases(&self, repo: &GithubRepo) -> Result<Vec<Release>, GithubError> {
        let operation = format!("list releases of {repo}");
        let route = format!("/repos/{}/{}/releases", repo.owner, repo.name);
        let mut page: Page<Release> = self
            .with_retries(|| async {
                self.octocrab()
                    .get(&route, Some(&[("per_page", "100")]))
                    .await
                    .map_err(|e| GithubError::from_octocrab(&operation, &e))
            })
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
        self.with_retries(|| async {
            self.octocrab()
                .get(&route, None::<&()>)
                .await
                .map_err(|e| GithubError::from_octocrab(&operation, &e))
        })
        .await
    }

    /// The text of `path` in `repo` at `git_ref` (a tag, branch or commit).
    pub async fn file_at(
        &self,
        repo: &GithubRepo,
        path: &str,
        git_ref: &str,
    ) -> Result<String, GithubError> {
        let operation = format!("read {path} of {repo} at {git_ref}");
        let route = format!(
            "/repos/{}/{}/contents/{}",
            repo.owner,
            repo.name,
            path.trim_start_matches('/')
        );
        let file: FileContent = self
            .with_retries(|| async {
                self.octocrab()
                    .get(&route, Some(&[("ref", git_ref)]))
                    .await
                    .map_err(|e| GithubError::from_octocrab(&operation, &e))
            })
            .await?;
        decode_content(&file).map_err(|m| GithubError::permanent(&operation, m))
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
