//! Registry credentials from the Docker config: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`), its `auths`, `credHelpers` and `credsStore`, the way the Docker CLI
//! reads them. A registry with no entry is used anonymously.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::RegistryError;
use image_mirror_common::reference::DOCKER_HUB;
use image_mirror_common::secret::Secret;

/// The most a credential helper's answer may hold.
pub const MAX_HELPER_OUTPUT: usize = 1024 * 1024;

/// The key Docker uses for Docker Hub in `auths` and when asking helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password (or access token used as one).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken(Secret),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    auths: HashMap<String, RawAuth>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// The credentials a Docker config file describes.
#[derive(Debug, Default, Clone)]
pub struct DockerConfig {
    auths: HashMap<String, Credential>,
    helpers: HashMap<String, String>,
    store: Option<String>,
    path: Option<PathBuf>,
    /// `PATH` for finding helpers; the process's own when unset.
    helper_path: Option<std::ffi::OsString>,
}

/// `https://index.docker.io/v1/` and the like -> `docker.io`; `https://host:5000/x` -> `host:5000`.
fn normalise_server(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

impl DockerConfig {
    /// Where the Docker CLI would look: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Loads the config at the default path; none there means anonymous everywhere.
    pub fn load_default() -> Result<Self, RegistryError> {
        match Self::default_path() {
            Some(p) if p.exists() => Self::load(&p),
            _ => Ok(Self::default()),
        }
    }

    /// Loads a Docker config file.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let err = |message: String| RegistryError::Credentials {
            registry: "*".into(),
            message: format!("{}: {message}", path.display()),
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&bytes, path)
    }

    /// A Docker config file's bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, RegistryError> {
        let err = |message: String| RegistryError::Credentials {
            registry: "*".into(),
            message: format!("{}: {message}", path.display()),
        };
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        let mut auths = HashMap::new();
        for (key, entry) in raw.auths {
            let server = normalise_server(&key);
            let credential = if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
                Some(Credential::IdentityToken(Secret::new(token)))
            } else if let Some(encoded) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        err(format!("auths.{key}.auth is not base64 of user:password"))
                    })?;
                let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                    err(format!("auths.{key}.auth is not base64 of user:password"))
                })?;
                Some(Credential::Basic {
                    username: user.to_owned(),
                    password: Secret::new(pass),
                })
            } else {
                match (entry.username, entry.password) {
                    (Some(u), Some(p)) => Some(Credential::Basic {
                        username: u,
                        password: Secret::new(p),
                    }),
                    _ => None,
                }
            };
            if let Some(c) = credential {
                auths.insert(server, c);
            }
        }
        let helpers = raw
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (normalise_server(&k), v))
            .collect();
        Ok(Self {
            auths,
            helpers,
            store: raw.creds_store.filter(|s| !s.is_empty()),
            path: Some(path.to_owned()),
            helper_path: None,
        })
    }

    /// The credential for `registry` (`docker.io`, `quay.io`, `127.0.0.1:5000`): a credential
    /// helper named for it, else `credsStore`, else `auths`; `None` means anonymous.
    pub async fn credential_for(
        &self,
        registry: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        let registry = normalise_server(registry);
        if let Some(helper) = self.helpers.get(&registry) {
            return ask_helper(helper, &registry, self.helper_path.as_deref()).await;
        }
        if let Some(store) = &self.store {
            if let Some(c) = ask_helper(store, &registry, self.helper_path.as_deref()).await? {
                return Ok(Some(c));
            }
        }
        Ok(self.auths.get(&registry).cloned())
    }

    /// The file this config came from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Where the credentials for `registry` come from, for people (never the secret): the
    /// helper, the store or the `auths` entry consulted, or that there are none.
    pub fn source_of(&self, registry: &str) -> String {
        let registry = normalise_server(registry);
        let file = self.path.clone().or_else(Self::default_path).map_or_else(
            || "the Docker config".to_owned(),
            |p| p.display().to_string(),
        );
        if self.path.is_none() {
            return format!("no credentials: {file} does not exist, so requests go without");
        }
        if let Some(helper) = self.helpers.get(&registry) {
            return format!(
                "the credential helper docker-credential-{helper} (credHelpers in {file})"
            );
        }
        let entry = self.auths.contains_key(&registry);
        match (&self.store, entry) {
            (Some(store), true) => format!(
                "the credential store docker-credential-{store} (credsStore in {file}), else the auths entry for {registry} there"
            ),
            (Some(store), false) => {
                format!("the credential store docker-credential-{store} (credsStore in {file})")
            }
            (None, true) => format!("the auths entry for {registry} in {file}"),
            (None, false) => format!(
                "no credentials: {file} has no entry for {registry}, so requests go without"
            ),
        }
    }

    /// The same config finding its helpers on `path` (tests).
    #[cfg(test)]
    pub(crate) fn with_helper_path(mut self, path: &std::ffi::OsStr) -> Self {
        self.helper_path = Some(path.to_owned());
        self
    }
}

/// Runs `docker-credential-<helper> get` with the server on stdin.
async fn ask_helper(
    helper: &str,
    registry: &str,
    search_path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credential>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let err = |message: String| RegistryError::Credentials {
        registry: registry.to_owned(),
        message: format!("{program}: {message}"),
    };
    let server = if registry == DOCKER_HUB {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        registry.to_owned()
    };
    let mut command = tokio::process::Command::new(&program);
    if let Some(p) = search_path {
        command.env("PATH", p);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(server.as_bytes()).await {
            // A helper that does not read what it is asked is answered all the same.
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(err(e.to_string())),
            _ => {}
        }
    }
    let (Some(out), Some(errs)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(err("no output pipes".into()));
    };
    let cap = u64::try_from(MAX_HELPER_OUTPUT).unwrap_or(u64::MAX) + 1;
    let errors = tokio::spawn(async move {
        let mut stderr = Vec::new();
        let _ = errs.take(cap).read_to_end(&mut stderr).await;
        stderr
    });
    let mut stdout = Vec::new();
    out.take(cap)
        .read_to_end(&mut stdout)
        .await
        .map_err(|e| err(e.to_string()))?;
    if stdout.len() > MAX_HELPER_OUTPUT {
        let _ = child.kill().await;
        return Err(err(format!(
            "answered more than {} KiB",
            MAX_HELPER_OUTPUT / 1024
        )));
    }
    let status = child.wait().await.map_err(|e| err(e.to_string()))?;
    let stderr = errors.await.unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&stdout).to_string() + &String::from_utf8_lossy(&stderr);
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!("exited with {status}")));
    }
    let answer: HelperAnswer = serde_json::from_slice(&stdout)
        .map_err(|_| err("answer is not the expected JSON".into()))?;
    Ok(Some(if answer.username == "<token>" {
        Credential::IdentityToken(Secret::new(answer.secret))
    } else {
        Credential::Basic {
            username: answer.username,
            password: Secret::new(answer.secret),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    #[tokio::test]
    async fn auths_in_every_form() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        let path = write(
            dir.path(),
            &format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                    "quay.io": {{"username": "bob", "password": "pw"}},
                    "ghcr.io": {{"identitytoken": "refresh"}},
                    "127.0.0.1:5000": {{}}
                }}}}"#
            ),
        );
        let c = DockerConfig::load(&path).unwrap();
        assert_eq!(
            c.credential_for("docker.io").await.unwrap(),
            Some(Credential::Basic {
                username: "alice".into(),
                password: Secret::new("s3cret:with:colons")
            })
        );
        assert_eq!(
            c.credential_for("quay.io").await.unwrap(),
            Some(Credential::Basic {
                username: "bob".into(),
                password: Secret::new("pw")
            })
        );
        assert_eq!(
            c.credential_for("ghcr.io").await.unwrap(),
            Some(Credential::IdentityToken(Secret::new("refresh")))
        );
        assert_eq!(c.credential_for("127.0.0.1:5000").await.unwrap(), None);
        assert_eq!(c.credential_for("other.io").await.unwrap(), None);
    }

    #[tokio::test]
    async fn helpers_are_asked_and_missing_helpers_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\nif [ \"$server\" = \"reg.test\" ]; then echo '{\"ServerURL\":\"reg.test\",\"Username\":\"carol\",\"Secret\":\"tok\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        std::process::Command::new("chmod")
            .args(["+x"])
            .arg(&helper)
            .status()
            .unwrap();
        let path = write(
            dir.path(),
            r#"{"credHelpers": {"reg.test": "fake", "missing.test": "nonexistent-helper"},
                "credsStore": "fake", "auths": {"plain.test": {"username": "u", "password": "p"}}}"#,
        );
        let mut c = DockerConfig::load(&path).unwrap();
        c.helper_path = Some(format!("{}:/usr/bin:/bin", dir.path().display()).into());
        assert_eq!(
            c.credential_for("reg.test").await.unwrap(),
            Some(Credential::Basic {
                username: "carol".into(),
                password: Secret::new("tok")
            })
        );
        // credsStore has nothing for plain.test: auths is used.
        let plain = c.credential_for("plain.test").await.unwrap();
        assert!(matches!(plain, Some(Credential::Basic { username, .. }) if username == "u"));
        let missing = c
            .credential_for("missing.test")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("docker-credential-nonexistent-helper"),
            "{missing}"
        );
    }
}
