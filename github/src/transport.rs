//! The one way GitHub requests leave: through octocrab's raw calls (its auth, its base URL),
//! with every answer read within a cap, every request within a deadline, and page links
//! followed only on the API's own origin (the token goes nowhere else).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use reqwest::Url;

use crate::client::{GithubClient, Method};
use crate::error::GithubError;
use image_mirror_common::link_header::next_link;

/// The largest answer read from GitHub.
pub const MAX_GITHUB_BODY: usize = 16 * 1024 * 1024;
/// The most of an error answer kept for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The deadline of one GitHub request, answer included.
pub const GITHUB_DEADLINE: Duration = Duration::from_secs(60);

/// A whole answer.
pub(crate) struct Answer {
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The `rel="next"` page the `Link` header names, when it is on the API's origin.
    pub(crate) fn next_page(
        &self,
        base: &str,
        operation: &str,
    ) -> Result<Option<String>, GithubError> {
        let Some(link) = self
            .headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
        else {
            return Ok(None);
        };
        let origin = |u: &Url| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_owned),
                u.port_or_known_default(),
            )
        };
        let (base_url, next) = (Url::parse(base), Url::parse(&link));
        match (base_url, next) {
            (Ok(b), Ok(n)) if origin(&b) == origin(&n) => Ok(Some(link)),
            _ => Err(GithubError::permanent(
                operation,
                format!("the next page's Link points away from {base}; not followed"),
            )),
        }
    }
}

impl GithubClient {
    /// Sends one request to `route` (a path under the API, or a page URL on its origin) and
    /// reads its whole answer within [`MAX_GITHUB_BODY`] and [`GITHUB_DEADLINE`]; an error
    /// status becomes a [`GithubError`] that says whether it may pass.
    pub(crate) async fn call(
        &self,
        method: Option<Method>,
        operation: &str,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, GithubError> {
        let exchange = async {
            let octocrab = self.octocrab();
            let uri = route.to_owned();
            let response = match method {
                None => octocrab._get(uri).await,
                Some(Method::Post) => octocrab._post(uri, body).await,
                Some(Method::Put) => octocrab._put(uri, body).await,
                Some(Method::Patch) => octocrab._patch(uri, body).await,
            }
            .map_err(|e| GithubError::from_octocrab(operation, &e))?;
            let (parts, body) = response.into_parts();
            let success = parts.status.is_success();
            let cap = if success {
                MAX_GITHUB_BODY
            } else {
                MAX_ERROR_BODY
            };
            let read = read_capped(body, cap).await;
            if !success {
                let body = match read {
                    Ok(b) | Err(Capped::TooLong(b)) => b,
                    Err(Capped::Broken(_)) => Bytes::new(),
                };
                return Err(GithubError::from_answer(
                    operation,
                    parts.status.as_u16(),
                    &parts.headers,
                    &body,
                ));
            }
            match read {
                Ok(body) => Ok(Answer {
                    headers: parts.headers,
                    body,
                }),
                Err(Capped::TooLong(_)) => Err(GithubError::permanent(
                    operation,
                    format!("the answer is over {} MiB", MAX_GITHUB_BODY >> 20),
                )),
                Err(Capped::Broken(e)) => Err(GithubError::from_octocrab(operation, &e)),
            }
        };
        match tokio::time::timeout(GITHUB_DEADLINE, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(GithubError::timeout(operation, GITHUB_DEADLINE)),
        }
    }
}

enum Capped {
    /// Over the cap: what was read up to it.
    TooLong(Bytes),
    Broken(octocrab::Error),
}

async fn read_capped<B>(mut body: B, cap: usize) -> Result<Bytes, Capped>
where
    B: http_body::Body<Data = Bytes, Error = octocrab::Error> + Unpin,
{
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Capped::Broken)?;
        if let Ok(data) = frame.into_data() {
            let room = cap.saturating_sub(out.len());
            if data.len() > room {
                out.extend_from_slice(&data[..room]);
                return Err(Capped::TooLong(out.freeze()));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}
