//! Who we are to each registry: its credentials (read once from the Docker config, never
//! under a lock another registry waits on), the auth scheme it asked for in its first 401
//! (Basic, or Bearer tokens from a realm), and the `Authorization` value a request to its own
//! origin carries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::authorization::{basic_auth_header, bearer_header, Authorization};
use crate::challenge::Challenge;
use crate::credentials::{Credential, DockerConfig};
use crate::error::RegistryError;
use crate::realm::Realms;
use crate::scope::Scope;
use crate::token::{TokenAsk, TokenCache};
use image_mirror_common::secret::Secret;

/// The longest a credential helper may take to answer.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// How a host wants to be authenticated, learned from its first 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostAuth {
    Anonymous,
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

impl HostAuth {
    /// What a `WWW-Authenticate` value asks for (anonymous when nothing we speak).
    pub(crate) fn from_challenge(header: Option<&str>) -> Self {
        match header.and_then(Challenge::parse) {
            Some(Challenge::Bearer { realm, service }) => Self::Bearer { realm, service },
            Some(Challenge::Basic) => Self::Basic,
            None => Self::Anonymous,
        }
    }
}

/// Credentials, learned schemes and tokens of every registry a client talks to.
pub(crate) struct Auth {
    docker_config: DockerConfig,
    credentials: Mutex<HashMap<String, Arc<OnceCell<Option<Credential>>>>>,
    schemes: Mutex<HashMap<String, HostAuth>>,
    pub(crate) tokens: TokenCache,
}

impl Auth {
    pub(crate) fn new(docker_config: DockerConfig) -> Self {
        Self {
            docker_config,
            credentials: Mutex::default(),
            schemes: Mutex::default(),
            tokens: TokenCache::default(),
        }
    }

    /// The credential for `registry`, read once. A helper that does not answer within
    /// [`HELPER_TIMEOUT`] is an error; while it runs, only requests to `registry` wait.
    pub(crate) async fn credential(
        &self,
        registry: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        let cell = {
            let mut map = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(registry.to_owned()).or_default())
        };
        cell.get_or_try_init(|| async {
            match tokio::time::timeout(HELPER_TIMEOUT, self.docker_config.credential_for(registry))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(RegistryError::Credentials {
                    registry: registry.to_owned(),
                    message: format!(
                        "the credential helper did not answer within {}s",
                        HELPER_TIMEOUT.as_secs()
                    ),
                }),
            }
        })
        .await
        .cloned()
    }

    /// Where `registry`'s credentials come from, for messages.
    pub(crate) fn source_of(&self, registry: &str) -> String {
        self.docker_config.source_of(registry)
    }

    /// The scheme `registry` asked for, if it has asked.
    pub(crate) fn scheme(&self, registry: &str) -> Option<HostAuth> {
        self.schemes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(registry)
            .cloned()
    }

    /// Remembers the scheme `registry` asked for.
    pub(crate) fn learn(&self, registry: &str, auth: HostAuth) {
        self.schemes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registry.to_owned(), auth);
    }

    /// The `Authorization` for a request to `registry`'s own origin within `scope`, if one is
    /// due, a token asked of its realm through `realms` when needed. `rejected` is the token a
    /// request just had refused: a new one is fetched unless another request already did.
    pub(crate) async fn authorization(
        &self,
        realms: Realms<'_>,
        registry: &str,
        scope: &Scope,
        rejected: Option<&Secret>,
    ) -> Result<Option<Authorization>, RegistryError> {
        let auth = self;
        match auth.scheme(registry) {
            None | Some(HostAuth::Anonymous) => Ok(None),
            Some(HostAuth::Basic) => match auth.credential(registry).await? {
                Some(Credential::Basic { username, password }) => Ok(Some(Authorization {
                    header: basic_auth_header(&username, password.expose()),
                    token: None,
                })),
                _ => Err(RegistryError::Auth {
                    registry: registry.to_owned(),
                    operation: "authenticate".into(),
                    status: 401,
                    message: "the registry asks for a user name and password and the Docker \
                              config has none for it"
                        .into(),
                }),
            },
            Some(HostAuth::Bearer { realm, service }) => {
                let credential = auth.credential(registry).await?;
                let ask = TokenAsk {
                    registry,
                    realm: &realm,
                    service: service.as_deref(),
                    scope,
                    credential: credential.as_ref(),
                    rejected,
                };
                let token = auth.tokens.get(realms, &ask).await?;
                Ok(Some(Authorization {
                    header: bearer_header(token.expose()),
                    token: Some(token),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use super::*;

    /// A Docker config whose `credHelpers` name a helper per registry, each a shell script.
    fn helpers(dir: &Path, scripts: &[(&str, &str, &str)]) -> DockerConfig {
        let mut map = Vec::new();
        for (registry, name, body) in scripts {
            let path = dir.join(format!("docker-credential-{name}"));
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::process::Command::new("chmod")
                .arg("+x")
                .arg(&path)
                .status()
                .unwrap();
            map.push(format!(r#""{registry}": "{name}""#));
        }
        let config = dir.join("config.json");
        std::fs::write(
            &config,
            format!(r#"{{"credHelpers": {{{}}}}}"#, map.join(",")),
        )
        .unwrap();
        let search = format!("{}:/usr/bin:/bin", dir.display());
        DockerConfig::load(&config)
            .unwrap()
            .with_helper_path(std::ffi::OsStr::new(&search))
    }

    const ANSWER: &str = r#"echo '{"Username":"u","Secret":"s"}'"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_helper_holds_up_only_its_own_registry() {
        let dir = tempfile::tempdir().unwrap();
        let slow = format!("sleep 5; {ANSWER}");
        let auth = Arc::new(Auth::new(helpers(
            dir.path(),
            &[("slow.test", "slow", &slow), ("fast.test", "fast", ANSWER)],
        )));
        let waiting = tokio::spawn({
            let auth = Arc::clone(&auth);
            async move { auth.credential("slow.test").await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let fast = auth.credential("fast.test").await.unwrap();
        assert!(fast.is_some());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "waited on the slow helper"
        );
        assert!(!waiting.is_finished());
        assert!(waiting.await.unwrap().unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_helper_that_never_answers_is_an_error_after_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(helpers(dir.path(), &[("hung.test", "hung", "sleep 3600")]));
        let err = auth.credential("hung.test").await.unwrap_err().to_string();
        assert!(err.contains("did not answer within 30s"), "{err}");
    }

    #[tokio::test]
    async fn a_helper_answer_over_its_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(helpers(
            dir.path(),
            &[("chatty.test", "chatty", "head -c 2000000 /dev/zero")],
        ));
        let err = auth
            .credential("chatty.test")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("answered more than 1024 KiB"), "{err}");
    }
}
