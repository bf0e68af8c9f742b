//! Listing a repository's tags (`GET /v2/<name>/tags/list`), every page.
//!
//! Pages are followed through the `Link: <…>; rel="next"` header. Some registries ignore `n`
//! and `last` and answer the whole list, sometimes with a `Link` to a page they have already
//! sent: a page that brings no tag not seen before, or a next URL already visited, ends the
//! listing, so every tag comes once and the listing always ends. A `Link` to another origin
//! is an error naming it: its tags are never taken, and no credential goes there. Each page
//! is read within [`MAX_TAG_PAGE`] bytes.

use image_mirror_common::link_header::next_link;
use std::collections::HashSet;

use reqwest::header::LINK;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::body::MAX_TAG_PAGE;
use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::manifest::protocol;
use crate::origin::Origins;
use crate::scope::Scope;
use crate::transport::{Call, Reply};
use image_mirror_common::Repository;

/// Tags asked for per page.
const PAGE_SIZE: usize = 1000;
/// A bound on pages, for a registry that sends new tags forever.
const MAX_PAGES: usize = 10_000;

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RegistryClient {
    /// Every tag of `repo`, in the order the registry lists them, each once.
    pub async fn list_tags(&self, repo: &Repository) -> Result<Vec<String>, RegistryError> {
        let first = self.repo_url(repo, &format!("tags/list?n={PAGE_SIZE}"))?;
        let mut next = Some(first);
        let mut visited = HashSet::new();
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        while let Some(url) = next.take() {
            if !visited.insert(url.to_string()) || visited.len() > MAX_PAGES {
                break;
            }
            let (page, link) = self.operation(self.tags_page(repo, &url)).await?;
            let before = tags.len();
            for tag in page {
                if seen.insert(tag.clone()) {
                    tags.push(tag);
                }
            }
            if tags.len() == before {
                break;
            }
            next = link;
        }
        Ok(tags)
    }

    /// Whether `repo` is known not to exist yet: its tag list answers 404. Anything else
    /// (tags, an error, a refusal) counts as "may exist". One request, not retried: callers
    /// use the answer only to skip work that would find nothing, never for correctness.
    pub async fn repository_is_new(&self, repo: &Repository) -> bool {
        let Ok(url) = self.repo_url(repo, "tags/list?n=1") else {
            return false;
        };
        let operation = format!("list tags of {}", repo.path());
        // The push scope, as the copy that follows asks for: one token serves both.
        let scope = Scope::push(repo.path());
        let call = Call::new(repo.registry(), &scope, &operation, Method::GET, url);
        matches!(self.fetch(call, MAX_TAG_PAGE).await, Ok(r) if r.status == StatusCode::NOT_FOUND)
    }

    async fn tags_page(
        &self,
        repo: &Repository,
        url: &Url,
    ) -> Result<(Vec<String>, Option<Url>), RegistryError> {
        let registry = repo.registry();
        let operation = format!("list tags of {}", repo.path());
        let scope = Scope::pull(repo.path());
        let call = Call::new(registry, &scope, &operation, Method::GET, url.clone());
        let reply = self.fetch(call, MAX_TAG_PAGE).await?;
        if reply.status != StatusCode::OK {
            return Err(reply.into_error(registry, &operation));
        }
        let next = self.next_page(registry, &operation, &reply)?;
        let list: TagList = serde_json::from_slice(&reply.body)
            .map_err(|e| protocol(registry, &operation, format!("bad tag list: {e}")))?;
        Ok((list.tags.unwrap_or_default(), next))
    }
}

impl RegistryClient {
    /// The next page a paged answer's `Link` names, on the registry's own origin only (a
    /// page elsewhere is an error naming it: nothing of it is taken).
    pub(crate) fn next_page(
        &self,
        registry: &str,
        operation: &str,
        reply: &Reply,
    ) -> Result<Option<Url>, RegistryError> {
        let next = reply
            .header(LINK.as_str())
            .and_then(next_link)
            .and_then(|link| reply.url.join(&link).ok());
        match next {
            Some(next) if !self.origins().is_registry_origin(registry, &next) => {
                let message = format!(
                    "the next page's Link points to another origin ({}://{}); it is not taken",
                    next.scheme(),
                    Origins::authority(&next)
                );
                Err(protocol(registry, operation, message))
            }
            next => Ok(next),
        }
    }
}
