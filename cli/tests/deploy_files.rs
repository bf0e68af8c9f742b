//! The deployment files: compose.yaml is valid against the Compose specification's schema,
//! every rendering of the Helm chart (and deploy/kubernetes, which is one) parses, and every
//! flag and variable they give the binary exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v: serde_yaml::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // `<<: *anchor` merge keys, as Compose reads them.
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `image-mirror <command...> --help`.
fn help(command: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args(command)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{command:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand words of `args` (up to the first flag) and the flags given.
fn split_args(args: &[String]) -> (Vec<&str>, Vec<&str>) {
    let words: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let flags = args
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap())
        .collect();
    (words, flags)
}

/// Every environment variable the binary reads: those of its flags (`[env: NAME`), and those
/// read outside clap, whose names appear in its sources.
fn known_variable(name: &str) -> bool {
    let from_flags = [
        vec![],
        vec!["run"],
        vec!["worker"],
        vec!["committer"],
        vec!["producer", "discover"],
        vec!["producer", "sync"],
        vec!["add-tag"],
        vec!["check"],
    ]
    .iter()
    .any(|c| help(c).contains(&format!("[env: {name}")));
    if from_flags {
        return true;
    }
    let sources = [
        "cli/src/args/mod.rs",
        "cli/src/telemetry.rs",
        "github/src/client.rs",
        "registry/src/credentials.rs",
    ];
    sources.iter().any(|f| {
        std::fs::read_to_string(root().join(f))
            .unwrap()
            .contains(name)
    })
}

fn check_invocation(what: &str, args: &[String], env: &BTreeSet<String>) {
    let (words, flags) = split_args(args);
    assert!(!words.is_empty(), "{what}: no command in {args:?}");
    let text = help(&words);
    for flag in flags {
        assert!(
            text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
            "{what}: `image-mirror {}` has no flag {flag}",
            words.join(" ")
        );
    }
    for name in env {
        assert!(
            known_variable(name),
            "{what}: the binary does not read {name}"
        );
    }
}

#[test]
fn compose_file_is_valid_against_the_compose_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("../shared/schemas/compose-spec.json")).unwrap(),
    )
    .unwrap();
    let compose = yaml_docs(&root().join("compose.yaml")).remove(0);
    // The schema says draft-07 with a URI spelling the validator does not know: name the draft.
    assert_eq!(schema["$schema"], "https://json-schema.org/draft-07/schema");
    let mut schema = schema;
    schema.as_object_mut().unwrap().remove("$schema");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&compose)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "compose.yaml: {errors:#?}");

    // A deliberately broken copy is refused: the validation has teeth.
    let mut broken = compose.clone();
    broken["services"]["worker"]["replica_count"] = Value::from(3);
    assert!(!validator.is_valid(&broken));

    let services = compose["services"].as_object().unwrap();
    for name in [
        "rabbitmq",
        "registry",
        "jaeger",
        "producer",
        "worker",
        "committer",
    ] {
        assert!(services.contains_key(name), "compose.yaml lacks {name}");
    }
    assert_eq!(services["worker"]["deploy"]["replicas"], 3);
    assert!(services["rabbitmq"]["image"]
        .as_str()
        .unwrap()
        .contains("management"));
    assert!(services["rabbitmq"]["healthcheck"].is_object());
    for role in [
        "producer",
        "sync-missing",
        "sync-full",
        "worker",
        "committer",
    ] {
        let s = &services[role];
        assert_eq!(
            s["depends_on"]["rabbitmq"]["condition"], "service_healthy",
            "{role} must wait for a healthy broker"
        );
        let args: Vec<String> = s["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let env: BTreeSet<String> = s["environment"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        check_invocation(&format!("compose {role}"), &args, &env);
    }
    assert!(services["producer"]["command"]
        .as_array()
        .unwrap()
        .contains(&Value::String("--every".into())));
    // Both passes of the images-list run on a schedule: the frequent --missing one, and the
    // daily full one.
    let command = |name: &str| -> Vec<&str> {
        services[name]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    };
    assert_eq!(
        command("sync-missing"),
        ["producer", "sync", "--missing", "--every", "15m"]
    );
    assert_eq!(command("sync-full"), ["producer", "sync", "--every", "24h"]);
}

/// `helm template` of the chart with `values` (the defaults when none), as YAML documents.
fn render_chart(values: Option<&Path>) -> Vec<Value> {
    let mut helm = Command::new(image_mirror_testkit::tools::path("helm"));
    helm.args(["template", "image-mirror"])
        .arg(root().join("charts/image-mirror"))
        .args(["--namespace", "image-mirror"]);
    if let Some(v) = values {
        helm.arg("-f").arg(v);
    }
    let out = helm.output().unwrap();
    assert!(
        out.status.success(),
        "helm template {values:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &out.stdout).unwrap();
    yaml_docs(file.path())
}

/// Every rendering of the chart the tests know: the defaults, each file of its `ci/`, and
/// deploy/kubernetes' settings.
fn chart_renderings() -> Vec<(String, Vec<Value>)> {
    let mut renderings = vec![("defaults".to_owned(), render_chart(None))];
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("charts/image-mirror/ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(root().join("deploy/kubernetes/values.yaml"));
    files.sort();
    for f in files {
        renderings.push((f.display().to_string(), render_chart(Some(&f))));
    }
    renderings
}

/// The containers of a rendering's Deployments and CronJobs.
fn containers(docs: &[Value]) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let pod = match kind.as_str() {
            "Deployment" => &doc["spec"]["template"]["spec"],
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        for c in pod["containers"].as_array().unwrap() {
            found.push((kind.clone(), c.clone()));
        }
    }
    found
}

#[test]
fn every_rendering_of_the_chart_gives_the_binary_only_flags_and_variables_it_has() {
    for (what, docs) in chart_renderings() {
        for doc in &docs {
            assert!(doc["apiVersion"].is_string(), "{what}: no apiVersion");
            assert!(doc["metadata"]["name"].is_string(), "{what}: no name");
            assert_eq!(doc["metadata"]["namespace"], "image-mirror", "{what}");
        }
        for (kind, c) in containers(&docs) {
            let args: Vec<String> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            let env: BTreeSet<String> = c["env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| e["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            check_invocation(&format!("{what} {kind}"), &args, &env);
            if kind == "Deployment" {
                assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{what}");
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what}");
            }
        }
    }
}

#[test]
fn deploy_kubernetes_runs_every_role_and_every_pass_with_keda() {
    let docs = yaml_docs(&root().join("deploy/kubernetes/image-mirror.yaml"));
    let mut roles = BTreeSet::new();
    let mut scheduled = BTreeSet::new();
    for (kind, c) in containers(&docs) {
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        roles.insert(args[0].clone());
        if kind == "CronJob" {
            scheduled.insert(args.join(" "));
        }
    }
    assert_eq!(
        roles,
        ["committer", "producer", "worker"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    for pass in [
        "producer discover",
        "producer sync --missing",
        "producer sync",
    ] {
        assert!(
            scheduled.contains(pass),
            "no CronJob runs `{pass}`: {scheduled:?}"
        );
    }
    // KEDA scales the worker Deployment on the jobs queue.
    let scaled = docs.iter().find(|d| d["kind"] == "ScaledObject").unwrap();
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        "image-mirror-worker"
    );
    assert_eq!(scaled["spec"]["triggers"][0]["type"], "rabbitmq");
    assert_eq!(
        scaled["spec"]["triggers"][0]["metadata"]["queueName"],
        "mirror.jobs"
    );
    // The Secrets the example fills in are those the chart reads.
    let secrets = yaml_docs(&root().join("deploy/kubernetes/secrets.yaml"));
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/image-mirror.yaml")).unwrap();
    for secret in &secrets {
        let name = secret["metadata"]["name"].as_str().unwrap();
        assert!(
            text.contains(&format!("name: {name}\n"))
                || text.contains(&format!("secretName: {name}\n")),
            "{name} is not read"
        );
        for key in secret["stringData"].as_object().unwrap().keys() {
            assert!(
                text.contains(&format!("key: {key}")),
                "{name}: {key} is not read"
            );
        }
    }
}

#[test]
fn deploy_kubernetes_is_the_chart_rendered_now() {
    let out = Command::new(root().join("scripts/render-kubernetes"))
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(root().join("deploy/kubernetes/image-mirror.yaml")).unwrap();
    assert!(
        committed == out.stdout,
        "deploy/kubernetes/image-mirror.yaml is not the chart rendered: run scripts/render-kubernetes"
    );
}

/// The `image-mirror` invocations of a shell script: each line that runs it, split into words
/// (quotes dropped).
fn invocations(script: &str) -> Vec<Vec<String>> {
    script
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("image-mirror "))
        .map(|rest| {
            rest.split_whitespace()
                .map(|w| w.trim_matches('"').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn github_actions_workflows_pass_actionlint_and_run_only_what_exists() {
    let dir = root().join("deploy/github-actions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    let lint = Command::new(image_mirror_testkit::tools::path("actionlint"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "actionlint: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let mut ran = BTreeSet::new();
    for file in &files {
        let workflow = yaml_docs(file).remove(0);
        for (name, job) in workflow["jobs"].as_object().unwrap() {
            let env: BTreeSet<String> = job["env"]
                .as_object()
                .map(|e| e.keys().cloned().collect())
                .unwrap_or_default();
            for step in job["steps"].as_array().unwrap() {
                let Some(script) = step["run"].as_str() else {
                    continue;
                };
                for args in invocations(script) {
                    let what = format!("{} job {name}", file.display());
                    check_invocation(&what, &args, &env);
                    ran.insert(args.join(" "));
                }
            }
        }
    }
    for expected in [
        "validate",
        "sort --check",
        "check --base origin/${GITHUB_BASE_REF}",
        "run --missing --workers 8 --report report.json",
        "run --workers 8 --fail-on-drift --report report.json",
        "run --discover --workers 8",
    ] {
        assert!(
            ran.contains(expected),
            "no workflow runs `{expected}`: {ran:?}"
        );
    }
}
