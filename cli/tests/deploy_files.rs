//! The deployment files: compose.yaml is valid against the Compose specification's schema,
//! every Kubernetes manifest parses, and every flag and variable they give the binary exists.

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

#[test]
fn kubernetes_manifests_parse_and_use_only_what_exists() {
    let dir = root().join("deploy/kubernetes");
    let mut kinds = BTreeSet::new();
    let mut secret_keys = BTreeSet::new();
    let mut containers = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in &files {
        for doc in yaml_docs(file) {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no kind", file.display()));
            assert!(
                doc["apiVersion"].is_string(),
                "{}: no apiVersion",
                file.display()
            );
            assert!(
                doc["metadata"]["name"].is_string(),
                "{}: no name",
                file.display()
            );
            kinds.insert(format!("{}/{kind}", doc["apiVersion"].as_str().unwrap()));
            if kind == "Secret" {
                for k in doc["stringData"].as_object().unwrap().keys() {
                    secret_keys.insert(k.clone());
                }
            }
            let pod = match kind {
                "Deployment" => &doc["spec"]["template"]["spec"],
                "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                _ => continue,
            };
            for c in pod["containers"].as_array().unwrap() {
                containers.push((file.display().to_string(), kind.to_owned(), c.clone()));
            }
        }
    }
    for expected in [
        "apps/v1/Deployment",
        "batch/v1/CronJob",
        "keda.sh/v1alpha1/ScaledObject",
        "keda.sh/v1alpha1/TriggerAuthentication",
        "v1/Secret",
    ] {
        assert!(kinds.contains(expected), "no {expected} among {kinds:?}");
    }
    assert!(secret_keys.contains("AMQP_URL") && secret_keys.contains("GITHUB_TOKEN"));
    assert!(secret_keys.contains(".dockerconfigjson"));
    let mut roles = BTreeSet::new();
    let mut scheduled = BTreeSet::new();
    for (file, kind, c) in &containers {
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let mut env: BTreeSet<String> = c["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        // Variables that come whole from a Secret.
        if c["envFrom"].is_array() {
            env.extend(secret_keys.iter().filter(|k| !k.starts_with('.')).cloned());
        }
        check_invocation(&format!("{file} {kind}"), &args, &env);
        roles.insert(args[0].clone());
        if kind == "CronJob" {
            scheduled.insert(args.join(" "));
        }
        if kind == "Deployment" {
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{file}");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{file}");
        }
    }
    assert_eq!(
        roles,
        ["committer", "producer", "worker"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    // Discovery and both passes of the images-list run as CronJobs.
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
    let scaling = yaml_docs(&dir.join("worker-autoscaling.yaml"));
    let scaled = scaling
        .iter()
        .find(|d| d["kind"] == "ScaledObject")
        .unwrap();
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        "image-mirror-worker"
    );
    assert_eq!(scaled["spec"]["triggers"][0]["type"], "rabbitmq");
    assert_eq!(
        scaled["spec"]["triggers"][0]["metadata"]["queueName"],
        "mirror.jobs"
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
