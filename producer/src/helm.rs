//! `helm-latest:<chart repository URL>`, as the original tool ran it: the repository added to
//! a helm of its own (its config, cache and data in a temporary folder, nothing of the user's
//! touched), the latest version of each chart of `helmCharts` found, the chart rendered with
//! `helm template` once per `chartConfig` environment with its `--set` values (once with the
//! chart's defaults when there are none), and every string value of a key named `image`
//! harvested, digests stripped.
//!
//! helm is an external program, found on `PATH` or given by path; every call has a deadline and
//! what it prints is read within a cap.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use image_mirror_common::helm_charts::HelmChart;
use image_mirror_common::ImageRef;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// The alias the chart repository gets in helm's private configuration.
const ALIAS: &str = "image-mirror";
/// The most a helm call may print (a rendered chart is some MiB at most).
const MAX_OUTPUT: u64 = 64 * 1024 * 1024;

/// Why a chart could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// helm is not there.
    #[error("helm-latest needs the helm program: {program:?} was not found (install helm, or give its path with --helm)")]
    Missing {
        /// What was looked for.
        program: String,
    },
    /// A helm call failed or ran out of time.
    #[error("helm {command}: {message}")]
    Failed {
        /// The call, without its values.
        command: String,
        /// What helm said, or why it was stopped.
        message: String,
    },
    /// The repository has no such chart.
    #[error("{repo}: no chart {chart:?} in the repository")]
    NoChart {
        /// The repository URL.
        repo: String,
        /// The chart.
        chart: String,
    },
}

/// A helm program and the deadline of each of its calls.
#[derive(Debug, Clone)]
pub struct Helm {
    /// The program: a path, or a name looked up on `PATH`.
    pub program: PathBuf,
    /// The longest one call may take.
    pub timeout: Duration,
}

impl Default for Helm {
    fn default() -> Self {
        Self {
            program: PathBuf::from("helm"),
            timeout: Duration::from_secs(120),
        }
    }
}

/// One image a chart renders, as `image:` wrote it (digest stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The image.
    pub image: ImageRef,
    /// Which chart, version and environment rendered it (for reports).
    pub from: String,
}

impl Helm {
    /// Every image the latest version of each of `charts` in the repository at `url`
    /// renders, in each environment; values that are not `image:tag` references are listed
    /// in the second part.
    pub async fn images(
        &self,
        url: &str,
        charts: &[HelmChart],
    ) -> Result<(Vec<Rendered>, Vec<String>), HelmError> {
        let home = tempfile::tempdir().map_err(|e| HelmError::Failed {
            command: "(set-up)".into(),
            message: e.to_string(),
        })?;
        self.run(home.path(), &["repo", "add", ALIAS, url, "--force-update"])
            .await?;
        let (mut images, mut odd) = (Vec::new(), Vec::new());
        for chart in charts {
            let version = self.latest(home.path(), url, &chart.name).await?;
            let reference = format!("{ALIAS}/{}", chart.name);
            let runs: Vec<(String, Vec<String>)> = if chart.environments.is_empty() {
                vec![("defaults".into(), Vec::new())]
            } else {
                chart
                    .environments
                    .iter()
                    .map(|e| (e.name.clone(), e.values.clone()))
                    .collect()
            };
            for (env, values) in runs {
                let mut args = vec![
                    "template",
                    "image-mirror-probe",
                    &reference,
                    "--version",
                    &version,
                ];
                for v in &values {
                    args.extend(["--set", v.as_str()]);
                }
                let yaml = self.run(home.path(), &args).await?;
                let from = format!("{}@{version} ({env})", chart.name);
                for value in image_values(&yaml) {
                    match parse_image(&value) {
                        Some(image) if !images.iter().any(|r: &Rendered| r.image == image) => {
                            images.push(Rendered {
                                image,
                                from: from.clone(),
                            });
                        }
                        Some(_) => {}
                        None => odd.push(format!(
                            "{from}: image {value:?} is not an image:tag reference"
                        )),
                    }
                }
            }
        }
        Ok((images, odd))
    }

    /// The latest version of `chart` (helm's search orders versions newest first, and leaves
    /// pre-releases out).
    async fn latest(&self, home: &Path, url: &str, chart: &str) -> Result<String, HelmError> {
        let name = format!("{ALIAS}/{chart}");
        let out = self
            .run(home, &["search", "repo", &name, "--output", "json"])
            .await?;
        let found: Vec<serde_json::Value> =
            serde_json::from_str(&out).map_err(|e| HelmError::Failed {
                command: format!("search repo {name}"),
                message: format!("unreadable answer: {e}"),
            })?;
        found
            .iter()
            .find(|c| c["name"].as_str() == Some(name.as_str()))
            .and_then(|c| c["version"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| HelmError::NoChart {
                repo: url.to_owned(),
                chart: chart.to_owned(),
            })
    }

    /// Runs helm with its folders in `home`; what it printed on stdout.
    async fn run(&self, home: &Path, args: &[&str]) -> Result<String, HelmError> {
        let command = args
            .iter()
            .take_while(|a| **a != "--set")
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let failed = |message: String| HelmError::Failed {
            command: command.clone(),
            message,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => HelmError::Missing {
                    program: self.program.display().to_string(),
                },
                _ => failed(e.to_string()),
            })?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let out = child.stdout.take();
        let err = child.stderr.take();
        let read = async {
            if let Some(o) = out {
                let _ = o.take(MAX_OUTPUT).read_to_end(&mut stdout).await;
            }
            if let Some(e) = err {
                let _ = e.take(64 * 1024).read_to_end(&mut stderr).await;
            }
            child.wait().await
        };
        let status = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| failed(format!("no answer within {}s", self.timeout.as_secs())))?
            .map_err(|e| failed(e.to_string()))?;
        if !status.success() {
            let said = String::from_utf8_lossy(&stderr);
            return Err(failed(
                said.trim().lines().last().unwrap_or("failed").to_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }
}

/// Every string value of a key named `image` in the YAML documents of `text`.
pub fn image_values(text: &str) -> Vec<String> {
    fn walk(value: &serde_yaml::Value, out: &mut Vec<String>) {
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        (Some("image"), serde_yaml::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| walk(v, out)),
            serde_yaml::Value::Tagged(t) => walk(&t.value, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        if let Ok(value) = serde::Deserialize::deserialize(doc) {
            walk(&value, &mut out);
        }
    }
    out
}

/// An `image:` value as an image with a tag, its digest dropped (`repo:tag@sha256:…`).
fn parse_image(value: &str) -> Option<ImageRef> {
    let without_digest = value.split('@').next().unwrap_or(value).trim();
    let image: ImageRef = without_digest.parse().ok()?;
    image.tag().is_some().then_some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_values_are_harvested_from_every_document_and_digests_dropped() {
        let text = "---\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          image: \"quay.io/cilium/cilium:v1.16.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n        - name: b\n          image: busybox:1.36\n---\n# empty\n---\nkind: ConfigMap\ndata:\n  image: not-an-image-key-value-only-strings-count\n  nested:\n    image:\n      repository: x\n";
        let values = image_values(text);
        assert_eq!(values.len(), 3, "{values:?}");
        let images: Vec<String> = values
            .iter()
            .filter_map(|v| parse_image(v))
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            images,
            [
                "quay.io/cilium/cilium:v1.16.0",
                "docker.io/library/busybox:1.36"
            ]
        );
    }
}
