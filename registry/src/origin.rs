//! Where a request may go, and whether it may carry a registry's credentials: the one place
//! that decides.
//!
//! A registry's credentials (its Basic auth, its bearer token) belong to one origin: the
//! scheme, host and port of that registry's API. A URL the registry hands out (an upload
//! `Location`, a tag list's `Link`, a redirect) on any other origin gets no credentials, and
//! plain HTTP to a host that is not listed as insecure is refused outright. `127.0.0.1` and
//! `localhost` are different hosts here, as they are to a browser.

use std::collections::HashSet;

use reqwest::Url;

use crate::error::RegistryError;
use image_mirror_common::reference::DOCKER_HUB;

/// The API host of Docker Hub.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Scheme, host and port of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `url`; `None` for URLs without a host or a known port.
    pub(crate) fn of(url: &Url) -> Option<Self> {
        Some(Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    /// `host` or `host:port` as `--insecure-registry` names hosts (the port only when it is
    /// not the scheme's default).
    fn authority(url: &Url) -> String {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }
}

/// What a URL is to the registry a request is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The registry's own API: its credentials go along.
    Registry,
    /// Another origin (a storage backend, a CDN): no credentials.
    Elsewhere,
}

/// The rules: which hosts may be spoken to over plain HTTP, and each registry's origin.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins {
    insecure: HashSet<String>,
}

impl Origins {
    /// Rules with these hosts (`host[:port]`) allowed over plain HTTP.
    pub(crate) fn new(insecure_hosts: &[String]) -> Self {
        Self {
            insecure: insecure_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `host[:port]` was listed as insecure.
    pub(crate) fn is_insecure(&self, authority: &str) -> bool {
        self.insecure.contains(&authority.to_ascii_lowercase())
    }

    /// `https://host/` (`http://` for insecure hosts); Docker Hub's API host for `docker.io`.
    pub(crate) fn base_url(&self, registry: &str) -> Result<Url, RegistryError> {
        let api_host = if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        };
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| RegistryError::Protocol {
            registry: registry.to_owned(),
            operation: "build URL".into(),
            message: e.to_string(),
        })
    }

    /// What `url` is to `registry`, or an error when it must not be requested at all: a
    /// scheme other than HTTP(S), or plain HTTP to a host not listed as insecure. `what` names
    /// where the URL came from, for the error.
    pub(crate) fn check(
        &self,
        registry: &str,
        url: &Url,
        what: &str,
    ) -> Result<Destination, RegistryError> {
        let base = self.base_url(registry)?;
        if Origin::of(url).is_some() && Origin::of(url) == Origin::of(&base) {
            return Ok(Destination::Registry);
        }
        self.check_elsewhere(registry, url, what)?;
        Ok(Destination::Elsewhere)
    }

    /// Refuses a URL off the registry's origin that must not be requested: not HTTP(S), no
    /// host, or plain HTTP to a host not listed as insecure.
    pub(crate) fn check_elsewhere(
        &self,
        registry: &str,
        url: &Url,
        what: &str,
    ) -> Result<(), RegistryError> {
        let authority = Origin::authority(url);
        let refuse = |why: String| RegistryError::Protocol {
            registry: registry.to_owned(),
            operation: what.to_owned(),
            message: why,
        };
        match url.scheme() {
            "https" if url.host_str().is_some() => Ok(()),
            "http" if url.host_str().is_some() => {
                if self.is_insecure(&authority) {
                    Ok(())
                } else {
                    Err(refuse(format!(
                        "refusing plain HTTP to {authority}, which is not listed with \
                         --insecure-registry"
                    )))
                }
            }
            other => Err(refuse(format!(
                "refusing a {other}: URL on {authority} (only https, or http to insecure hosts)"
            ))),
        }
    }

    /// Whether `url` is on `registry`'s own origin.
    pub(crate) fn is_registry_origin(&self, registry: &str, url: &Url) -> bool {
        self.base_url(registry)
            .is_ok_and(|base| Origin::of(url).is_some() && Origin::of(url) == Origin::of(&base))
    }

    /// `host[:port]` of a URL, for messages.
    pub(crate) fn authority(url: &Url) -> String {
        Origin::authority(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_the_registry_origin_gets_credentials() {
        let o = Origins::new(&["127.0.0.1:5000".to_owned()]);
        let reg = "127.0.0.1:5000";
        assert_eq!(
            o.check(reg, &url("http://127.0.0.1:5000/v2/x/blobs/uploads/1"), "t")
                .unwrap(),
            Destination::Registry
        );
        // localhost is another host; not listed, so plain HTTP to it is refused.
        let e = o
            .check(reg, &url("http://localhost:5000/v2/x"), "upload")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("localhost:5000") && e.contains("insecure"),
            "{e}"
        );
        // Another port is another origin.
        assert!(o.check(reg, &url("http://127.0.0.1:5001/x"), "t").is_err());
        // HTTPS elsewhere: allowed, without credentials.
        assert_eq!(
            o.check(reg, &url("https://storage.example/blob?sig=1"), "t")
                .unwrap(),
            Destination::Elsewhere
        );
        assert!(o.check(reg, &url("ftp://x/y"), "t").is_err());
    }

    #[test]
    fn docker_hub_is_its_api_host_over_https() {
        let o = Origins::default();
        assert_eq!(
            o.base_url("docker.io").unwrap().as_str(),
            "https://registry-1.docker.io/"
        );
        assert!(o.is_registry_origin("docker.io", &url("https://registry-1.docker.io:443/v2/")));
        assert!(!o.is_registry_origin("docker.io", &url("http://registry-1.docker.io/v2/")));
        assert!(!o.is_registry_origin("quay.io", &url("https://cdn.quay.io/x")));
    }
}
