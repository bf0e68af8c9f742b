//! `helm-latest` rules with the real helm against a chart repository served on loopback (a
//! chart the test packages in two versions, and the `index.yaml` helm writes for them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use image_mirror_testkit::http::{Body, Reply, Response, Server};
use image_mirror_testkit::{tools, Registry};
use serde_json::{json, Value};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn helm(dir: &Path, args: &[&str]) {
    let out = Command::new(tools::path("helm"))
        .args(args)
        .current_dir(dir)
        .env("HELM_CONFIG_HOME", dir.join(".helm/config"))
        .env("HELM_CACHE_HOME", dir.join(".helm/cache"))
        .env("HELM_DATA_HOME", dir.join(".helm/data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The chart `demo` at `version`, whose base image has tag `base`: it always renders the base
/// image and a denied one, the `extra` image when `extra.enabled`, the `other` image when
/// `other.enabled`.
fn write_chart(dir: &Path, version: &str, base: &str) {
    let chart = dir.join("demo");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        format!("apiVersion: v2\nname: demo\nversion: {version}\nappVersion: \"{base}\"\n"),
    )
    .unwrap();
    std::fs::write(
        chart.join("values.yaml"),
        format!(
            "base:\n  image: quay.io/demo/base:{base}\ndenied:\n  image: quay.io/demo/denied:9.9\n\
             extra:\n  enabled: false\n  image: quay.io/demo/extra:2.0@{DIGEST}\n\
             other:\n  enabled: false\n  image: quay.io/demo/other:3.0\n"
        ),
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/deployment.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: demo\nspec:\n  template:\n    spec:\n      containers:\n        - name: base\n          image: {{ .Values.base.image | quote }}\n        - name: denied\n          image: {{ .Values.denied.image | quote }}\n        {{- if .Values.extra.enabled }}\n        - name: extra\n          image: {{ .Values.extra.image | quote }}\n        {{- end }}\n        {{- if .Values.other.enabled }}\n        - name: other\n          image: {{ .Values.other.image | quote }}\n        {{- end }}\n",
    )
    .unwrap();
    helm(dir, &["package", "demo", "--destination", "repo"]);
}

/// A chart repository on loopback serving `dir/repo`.
fn serve(dir: &Path) -> Server {
    let root = dir.join("repo");
    Server::start_sync(move |request| {
        let name = request.path().trim_start_matches('/');
        match std::fs::read(root.join(name)) {
            Ok(bytes) if !name.contains("..") => Response::new(200)
                .header("content-type", "application/octet-stream")
                .body(Body::Bytes(bytes))
                .into(),
            _ => Reply::Send(Response::new(404)),
        }
    })
}

fn tags(dir: &Path, target: &Registry, helm_program: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .current_dir(dir)
        .args(["--insecure-registry", target.host()])
        .args(["--helm", helm_program, "tags", "demo"])
        .env("DOCKER_CONFIG", dir)
        .env("GITHUB_API_URL", "http://127.0.0.1:9")
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn helm_latest_renders_the_latest_chart_in_each_environment_less_the_denylist() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_chart(dir, "0.9.0", "1.0");
    write_chart(dir, "1.0.0", "1.1");
    let server = serve(dir);
    helm(dir, &["repo", "index", "repo", "--url", &server.url()]);
    let target = Registry::start();
    let t = target.host();
    std::fs::write(
        dir.join("images-list"),
        format!(
            "quay.io/demo/base {t}/mirror/mirrored-demo-base 1.0\n\
             quay.io/demo/extra {t}/mirror/mirrored-demo-extra 1.0\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        json!({"demo": {
            "versionSource": format!("helm-latest:{}", server.url()),
            "imageDenylist": ["quay.io/demo/denied"],
            "helmCharts": {"demo": {"chartConfig": {
                "with-extra": {"values": ["extra.enabled=true"]},
                "with-other": {"values": ["other.enabled=true"]}
            }}}
        }})
        .to_string(),
    )
    .unwrap();

    let out = tags(dir, &target, &tools::path("helm").display().to_string());
    let text = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{text}", String::from_utf8_lossy(&out.stdout)));
    let key = &report[0];
    assert_eq!(key["errors"], json!([]), "{report:#}");
    // The latest chart (1.0.0, base 1.1), both environments, the digest dropped, the denied
    // image left out.
    assert_eq!(
        key["found"],
        json!([
            "quay.io/demo/base:1.1",
            "quay.io/demo/extra:2.0",
            "quay.io/demo/other:3.0"
        ]),
        "{report:#}"
    );
    let new: Vec<String> = key["new"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["source"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["tag"].as_str().unwrap()
            )
        })
        .collect();
    // Mapped images get their new tags; the image images-list does not map is proposed as a
    // new image, its target derived by the mirrored- rule.
    assert_eq!(
        new,
        [
            format!("quay.io/demo/base {t}/mirror/mirrored-demo-base 1.1"),
            format!("quay.io/demo/extra {t}/mirror/mirrored-demo-extra 2.0"),
            format!("quay.io/demo/other {t}/mirror/mirrored-demo-other 3.0"),
        ],
        "{report:#}"
    );
    assert_eq!(out.status.code(), Some(0), "{report:#}{text}");

    // Without helm: the key fails, saying so.
    let out = tags(dir, &target, "/nonexistent/helm");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let errors = report[0]["errors"].to_string();
    assert!(
        errors.contains("helm-latest needs the helm program")
            && errors.contains("/nonexistent/helm"),
        "{errors}"
    );
}
