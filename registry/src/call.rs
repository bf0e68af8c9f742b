//! One request to a registry and its answer, as the protocol operations write and read them:
//! where it goes, on whose behalf and within which scope, what it carries; the answer's
//! status, headers, body and the URL that gave it.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::sync::OwnedSemaphorePermit;

use crate::body;
use crate::error::RegistryError;
use crate::retry::parse_retry_after;
use crate::scope::Scope;

/// A web API beside a registry that a call speaks to instead of the registry's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// A token realm the registry's own challenge named: refused over plain HTTP unless its
    /// host is listed as insecure.
    Realm,
    /// An API the user named (Docker Hub's, `--docker-hub-api`).
    Named,
}

/// One request to a registry, or to a web API on its behalf: where, what for, and what it
/// carries.
pub(crate) struct Call<'a> {
    pub(crate) registry: &'a str,
    pub(crate) scope: &'a Scope,
    pub(crate) operation: &'a str,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    /// A manifest GET: a pull, as Docker Hub counts them, within the registry's budget.
    pub(crate) pull: bool,
    /// A web API's call: it carries the credentials its caller put in its headers, to its
    /// own URL only (no redirect is followed), and its 401 is its answer.
    pub(crate) api: Option<Api>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        registry: &'a str,
        scope: &'a Scope,
        operation: &'a str,
        method: Method,
        url: Url,
    ) -> Self {
        Self {
            registry,
            scope,
            operation,
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            pull: false,
            api: None,
        }
    }

    /// A call to the web API `api` at `url`, on `registry`'s behalf.
    pub(crate) fn api(
        api: Api,
        registry: &'a str,
        operation: &'a str,
        method: Method,
        url: Url,
    ) -> Self {
        Self {
            api: Some(api),
            ..Self::new(registry, &NO_SCOPE, operation, method, url)
        }
    }

    /// Marks the call as a pull (a manifest GET).
    pub(crate) fn pull(mut self) -> Self {
        self.pull = true;
        self
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub(crate) fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

/// The scope of a web API's call: none (it is not the registry's to grant).
static NO_SCOPE: Scope = Scope {
    repository: String::new(),
    push: false,
    also_pull: None,
};

/// A whole answer: its status, headers and body (for an error status, the first few KiB).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The URL that answered (after redirects).
    pub(crate) url: Url,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error this answer means: 404 `NotFound`, 401/403 `Auth`, else `Status` with its
    /// `Retry-After`.
    pub(crate) fn into_error(self, registry: &str, operation: &str) -> RegistryError {
        let retry_after = self.header("retry-after").and_then(parse_retry_after);
        let detail = body::error_text(&self.body);
        match self.status.as_u16() {
            404 => RegistryError::NotFound {
                registry: registry.to_owned(),
                operation: operation.to_owned(),
            },
            code @ (401 | 403) => RegistryError::Auth {
                registry: registry.to_owned(),
                operation: operation.to_owned(),
                status: code,
                message: if detail.is_empty() {
                    "unauthorized".into()
                } else {
                    detail
                },
            },
            code => RegistryError::Status {
                registry: registry.to_owned(),
                operation: operation.to_owned(),
                status: code,
                detail,
                retry_after,
            },
        }
    }
}

/// A streamed answer (a blob body), holding its request slot while it is read.
pub(crate) struct Opened {
    pub(crate) response: Response,
    pub(crate) permit: OwnedSemaphorePermit,
}
