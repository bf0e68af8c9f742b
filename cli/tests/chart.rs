//! The Helm chart (`charts/image-mirror`) with the real helm: it lints strictly, every
//! rendering is valid against the Kubernetes API's schemas and the CRDs of KEDA and the
//! Prometheus Operator (offline, unknown fields refused), a wrong value fails with the
//! schema's message, it is versioned with the binary, and once pushed to a registry as an OCI
//! artifact it is mirrored by image-mirror itself, digest-exact, and pulled back by helm.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image_mirror_testkit::registry::{Implementation, RegistryOptions};
use image_mirror_testkit::{crane, tools, Registry};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    root().join("charts/image-mirror")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// helm with its own folders in `home` (nothing of the machine's read or written).
fn helm(home: &Path) -> Command {
    let mut c = Command::new(tools::path("helm"));
    for (var, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        c.env(var, home.join(dir));
    }
    c
}

/// The chart's value files: the defaults (`None`) and each file of its `ci/`.
fn value_files() -> Vec<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "ci/ holds {files:?}");
    std::iter::once(None)
        .chain(files.into_iter().map(Some))
        .collect()
}

/// scripts/validate-manifests on `files`, with the venv scripts/chart-tools made.
fn validate(files: &[PathBuf]) -> Output {
    Command::new(root().join("target/tools/venv/bin/python"))
        .arg(root().join("scripts/validate-manifests"))
        .args(files)
        .output()
        .expect("scripts/chart-tools installs the validator")
}

#[test]
fn the_chart_lints_strictly_and_every_rendering_is_valid_kubernetes() {
    let home = tempfile::tempdir().unwrap();
    let mut rendered = Vec::new();
    for (i, values) in value_files().into_iter().enumerate() {
        let with = |c: &mut Command| {
            if let Some(v) = &values {
                c.arg("-f").arg(v);
            }
        };
        let mut lint = helm(home.path());
        lint.args(["lint", "--strict"]).arg(chart());
        with(&mut lint);
        let out = lint.output().unwrap();
        assert!(out.status.success(), "lint {values:?}: {}", text(&out));

        let mut template = helm(home.path());
        template
            .args(["template", "mirror"])
            .arg(chart())
            .args(["--namespace", "mirror"]);
        with(&mut template);
        let out = template.output().unwrap();
        assert!(out.status.success(), "template {values:?}: {}", text(&out));
        let file = home.path().join(format!("rendered-{i}.yaml"));
        std::fs::write(&file, &out.stdout).unwrap();
        rendered.push(file);
    }
    let out = validate(&rendered);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    // Every kind the chart can make was held to a schema.
    for kind in [
        "Deployment",
        "CronJob",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "ScaledObject",
        "TriggerAuthentication",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("valid: ") && l.contains(&format!(": {kind} "))),
            "{kind} never validated: {report}"
        );
    }

    // The validator refuses what the API would: a misspelt field of a Deployment and of a
    // ScaledObject.
    let everything = std::fs::read_to_string(&rendered[1]).unwrap();
    assert!(
        everything.contains("minReplicaCount")
            && everything.contains("terminationGracePeriodSeconds")
    );
    let typo = home.path().join("typo.yaml");
    std::fs::write(
        &typo,
        everything
            .replace("minReplicaCount", "minReplicas")
            .replace("terminationGracePeriodSeconds", "terminationGraceSeconds"),
    )
    .unwrap();
    let out = validate(&[typo]);
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("'minReplicas' was unexpected"), "{report}");
    assert!(
        report.contains("'terminationGraceSeconds' was unexpected"),
        "{report}"
    );
}

#[test]
fn a_value_of_the_wrong_type_or_an_incomplete_one_fails_with_why() {
    let home = tempfile::tempdir().unwrap();
    for (values, message) in [
        (
            "worker:\n  concurrency: four\n",
            "at '/worker/concurrency': got string, want integer",
        ),
        (
            "workers:\n  concurrency: 4\n",
            "additional properties 'workers' not allowed",
        ),
        ("worker:\n  grace: soon\n", "/worker/grace"),
        (
            "worker:\n  trust:\n    requireIdentity: [no-issuer]\n",
            "/worker/trust/requireIdentity/0",
        ),
        (
            "worker:\n  trust:\n    requireIdentity: [\"https://issuer=.+\"]\n",
            "worker.trust.requireIdentity needs worker.trust.trustedRoot.configMap",
        ),
    ] {
        let file = home.path().join("values.yaml");
        std::fs::write(&file, values).unwrap();
        let out = helm(home.path())
            .args(["template", "mirror"])
            .arg(chart())
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{values}");
        assert!(text(&out).contains(message), "{values}: {}", text(&out));
    }
}

#[test]
fn the_chart_is_versioned_with_the_binary_and_its_rules_are_the_alerts() {
    let chart_yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart_yaml["version"].as_str(), Some(version));
    assert_eq!(chart_yaml["appVersion"].as_str(), Some(version));
    assert_eq!(
        std::fs::read_to_string(chart().join("files/alerts.yml")).unwrap(),
        std::fs::read_to_string(root().join("deploy/observability/alerts.yml")).unwrap(),
        "charts/image-mirror/files/alerts.yml is a copy of deploy/observability/alerts.yml"
    );
}

#[test]
fn the_packaged_chart_pushed_to_a_registry_is_mirrored_digest_exact_and_pulled_by_helm() {
    let home = tempfile::tempdir().unwrap();
    let options = RegistryOptions::default().on(Implementation::Distribution3);
    let (upstream, mirror) = (
        Registry::start_with(&options),
        Registry::start_with(&options),
    );

    let version = env!("CARGO_PKG_VERSION");
    let mut publish = Command::new(root().join("scripts/publish-chart"));
    publish
        .arg(format!("oci://{}/charts", upstream.host()))
        .arg("--plain-http");
    for (var, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        publish.env(var, home.path().join(dir));
    }
    let out = publish.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let (from, to) = (
        format!("{}/charts/image-mirror:{version}", upstream.host()),
        format!("{}/helm/image-mirror:{version}", mirror.host()),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args([
            "--insecure-registry",
            &format!("{},{}", upstream.host(), mirror.host()),
        ])
        .args(["copy", &from, &to])
        .env(
            "IMAGE_MIRROR_CACHE_DIR",
            home.path().join("image-mirror-cache"),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(crane::digest(&to), crane::digest(&from));
    assert_eq!(crane::manifest(&to), crane::manifest(&from));

    let pull = |host: &str, into: &str| {
        let dir = home.path().join(into);
        std::fs::create_dir_all(&dir).unwrap();
        let out = helm(home.path())
            .arg("pull")
            .arg(format!("oci://{host}"))
            .args(["--version", version, "--plain-http", "--destination"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        std::fs::read(dir.join(format!("image-mirror-{version}.tgz"))).unwrap()
    };
    let published = pull(
        &format!("{}/charts/image-mirror", upstream.host()),
        "upstream",
    );
    let mirrored = pull(&format!("{}/helm/image-mirror", mirror.host()), "mirror");
    assert!(!published.is_empty());
    assert!(
        mirrored == published,
        "the chart pulled from the mirror is not the chart published"
    );
}
