//! The GitHub client: octocrab configured from the environment, with retries.

use std::future::Future;
use std::time::Duration;

use crate::error::GithubError;
use image_mirror_common::retry::{RetryPolicy, Transient};
use image_mirror_common::secret::Secret;

/// The public API, used when `GITHUB_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The longest wait for a rate limit to reset before the request is reported as failed.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// GitHub calls: 5 retries, 0.5 s doubling to 30 s.
pub const CALLS: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(500), Duration::from_secs(30), 5);

/// The methods that send a body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Method {
    Post,
    Put,
    Patch,
}

/// A GitHub API client.
#[derive(Clone)]
pub struct GithubClient {
    octocrab: octocrab::Octocrab,
    base: String,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl GithubClient {
    /// A client for `GITHUB_API_URL` (default the public API), with `GITHUB_TOKEN` when set.
    pub fn from_env() -> Result<Self, GithubError> {
        let base = std::env::var("GITHUB_API_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        let token = std::env::var("GITHUB_TOKEN")
            .ok()
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        Self::new(&base, token.as_ref())
    }

    /// A client for the API at `base`.
    pub fn new(base: &str, token: Option<&Secret>) -> Result<Self, GithubError> {
        let setup = "set up the client";
        let mut builder = octocrab::Octocrab::builder()
            .base_uri(base)
            .map_err(|e| {
                GithubError::permanent(setup, format!("bad GITHUB_API_URL {base:?}: {e}"))
            })?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(60)));
        if let Some(token) = token {
            builder = builder.personal_token(token.expose().to_owned());
        }
        let octocrab = builder
            .build()
            .map_err(|e| GithubError::from_octocrab(setup, &e))?;
        Ok(Self {
            octocrab,
            base: base.to_owned(),
            retry: CALLS,
        })
    }

    /// The same client with another retry policy (tests make it quick).
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn octocrab(&self) -> &octocrab::Octocrab {
        &self.octocrab
    }
}

/// `route?k=v&…`, encoded.
fn with_query(route: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return route.to_owned();
    }
    match reqwest::Url::parse(&format!("http://api.invalid{route}")) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            format!("{}?{}", url.path(), url.query().unwrap_or_default())
        }
        Err(_) => route.to_owned(),
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    operation: &str,
    body: &[u8],
) -> Result<T, GithubError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        GithubError::permanent(
            operation,
            format!("the answer is not the expected JSON: {e}"),
        )
    })
}

impl GithubClient {
    /// `GET route` with query `params`, retried, the answer read as `T`.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        route: &str,
        params: &[(&str, &str)],
    ) -> Result<T, GithubError> {
        let route = with_query(route, params);
        let answer = self
            .with_retries(|| self.call(None, operation, &route, None))
            .await?;
        parse(operation, &answer.body)
    }

    /// Every item of a paged list at `route`, following the `next` links on the API's own
    /// origin, at most `max_pages` pages.
    pub(crate) async fn get_pages<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        route: &str,
        params: &[(&str, &str)],
        max_pages: usize,
    ) -> Result<Vec<T>, GithubError> {
        let mut next = Some(with_query(route, params));
        let mut seen = std::collections::HashSet::new();
        let mut items = Vec::new();
        while let Some(page) = next.take() {
            if !seen.insert(page.clone()) || seen.len() > max_pages {
                break;
            }
            let answer = self
                .with_retries(|| self.call(None, operation, &page, None))
                .await?;
            let mut found: Vec<T> = parse(operation, &answer.body)?;
            items.append(&mut found);
            next = answer.next_page(&self.base, operation)?;
        }
        Ok(items)
    }

    /// `method route` with a JSON `body`, retried, the answer read as `T`.
    pub(crate) async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        operation: &str,
        route: &str,
        body: &serde_json::Value,
    ) -> Result<T, GithubError> {
        let answer = self
            .with_retries(|| self.call(Some(method), operation, route, Some(body)))
            .await?;
        parse(operation, &answer.body)
    }

    /// Runs `op` until it succeeds, fails permanently, or the retries run out. A rate limit
    /// that resets within two minutes is waited for.
    pub async fn with_retries<T, F, Fut>(&self, op: F) -> Result<T, GithubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GithubError>>,
    {
        self.retry
            // GitHub's errors do not single out timeouts: no separate bound for them.
            .run(0, op, |e: &GithubError, delay| {
                tracing::debug!(error = %e, delay_ms = delay.as_millis() as u64, "GitHub: retrying");
            })
            .await
    }
}

impl Transient for GithubError {
    /// A failure that may pass, unless GitHub asks for a longer wait than is worth it.
    fn is_transient(&self) -> bool {
        self.transient && self.retry_after.is_none_or(|w| w <= MAX_WAIT)
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}
