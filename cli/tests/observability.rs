//! Operating it: the Prometheus configuration, the alerting rules and their unit tests pass
//! `promtool`; a real Prometheus scraping a real worker and committer during a small mirror
//! run answers every dashboard query with data and evaluates every alert without error (and
//! fires none in a healthy run); the metric names the README documents are the ones served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::front::Hook;
use image_mirror_testkit::http::{Reply, Response};
use image_mirror_testkit::ports::free_port;
use image_mirror_testkit::process::{Running, SpawnRunning};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{images, process, rabbitmq};
use image_mirror_testkit::{Front, FrontOptions, Prometheus, Quota, Registry};
use serde_json::Value;

const PROMTOOL: &str = "/usr/bin/promtool";
/// The quota the metering front grants.
const QUOTA: u64 = 1000;
/// Images mirrored in the run.
const IMAGES: u64 = 4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn observability() -> PathBuf {
    root().join("deploy/observability")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn promtool(args: &[&str]) -> Output {
    Command::new(PROMTOOL)
        .current_dir(observability())
        .args(args)
        .output()
        .unwrap()
}

/// A YAML file, with `<<: *anchor` merge keys applied as Compose applies them.
fn yaml(path: &Path) -> serde_yaml::Value {
    let mut v: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.apply_merge().unwrap();
    v
}

/// The alerting rules of alerts.yml: (name, expression).
fn alerts() -> Vec<(String, String)> {
    let rules = yaml(&observability().join("alerts.yml"));
    rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().trim().to_owned(),
            )
        })
        .collect()
}

/// Every query of the dashboard: (panel title, expression).
fn dashboard_queries() -> Vec<(String, String)> {
    let path = observability().join("grafana/dashboards/image-mirror.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], "prometheus", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            out.push((title.to_owned(), t["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// The `image_mirror_*` names in `text`, histogram series folded into their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("image_mirror_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
            .unwrap_or(name);
        names.insert(family.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn promtool_passes_the_config_the_rules_and_their_unit_tests() {
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = promtool(&args);
        assert!(out.status.success(), "promtool {args:?}: {}", text(&out));
    }

    // Each alert has a case where it fires and one where it stays quiet.
    let tests = yaml(&observability().join("alerts.test.yml"));
    for (alert, _) in alerts() {
        let cases: Vec<&serde_yaml::Value> = tests["tests"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
            .filter(|c| c["alertname"].as_str() == Some(&alert))
            .collect();
        let fires =
            |c: &&serde_yaml::Value| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
        assert!(cases.iter().any(fires), "{alert}: no case where it fires");
        assert!(
            cases.iter().any(|c| !fires(c)),
            "{alert}: no case where it stays quiet"
        );
    }

    // The unit tests have teeth: an alert that fires too early fails them.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(observability().join("alerts.yml")).unwrap();
    assert!(rules.contains("for: 10m"));
    std::fs::write(
        dir.path().join("alerts.yml"),
        rules.replace("for: 10m", "for: 1m"),
    )
    .unwrap();
    std::fs::copy(
        observability().join("alerts.test.yml"),
        dir.path().join("alerts.test.yml"),
    )
    .unwrap();
    let out = Command::new(PROMTOOL)
        .current_dir(dir.path())
        .args(["test", "rules", "alerts.test.yml"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn the_kubernetes_prometheus_rule_holds_the_same_alerts() {
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(
        &std::fs::read_to_string(root().join("deploy/kubernetes/image-mirror.yaml")).unwrap(),
    )
    .map(|d| serde::Deserialize::deserialize(d).unwrap())
    .collect();
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").unwrap();
    assert_eq!(rule["spec"], yaml(&observability().join("alerts.yml")));
    let monitor = docs.iter().find(|d| d["kind"] == "ServiceMonitor").unwrap();
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "role");
}

/// A role of the binary, up and serving /metrics on `port`.
struct Role {
    child: Running,
}

impl Role {
    fn start(dir: &Path, env: &[(&str, String)], port: u16, args: &[&str], ready: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .running();
        let mut logs = BufReader::new(child.stderr.take().unwrap());
        process::wait_for_line(&mut logs, ready, args[0]);
        process::drain(logs);
        Self { child }
    }

    fn stop(mut self) {
        process::terminate(&self.child);
        assert!(self.child.wait().unwrap().success());
    }
}

fn non_empty(result: &[Value]) -> bool {
    !result.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_answers_every_dashboard_query_and_alert_from_a_real_worker() {
    // A source behind a metering front (rate-limit headers on every manifest answer) that
    // answers its first manifest request with a 503, so that a retry is counted too.
    let (src, dst) = (Registry::start(), Registry::start());
    let failed_once = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&failed_once);
    let hook: Hook = Arc::new(move |request| {
        (request.path().contains("/manifests/") && !flag.swap(true, Ordering::SeqCst))
            .then(|| Reply::from(Response::new(503)))
    });
    let front = Front::start(
        src.host(),
        FrontOptions {
            quota: Some(Quota {
                limit: QUOTA,
                window: Duration::from_secs(3600),
            }),
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..IMAGES {
        let repo = format!("team/app{i}");
        push_image(&src.url(), &repo, "v1", &images::oci_index(7100 + i)).await;
        lines.push(format!(
            "{}/{repo} {}/mirror/app{i} v1",
            front.host(),
            dst.host()
        ));
    }
    std::fs::write(dir.path().join("images-list"), lines.join("\n") + "\n").unwrap();

    let url = rabbitmq::amqp_url();
    let prefix = format!("test.observability.{}", std::process::id());
    let env = vec![
        ("AMQP_URL", url.clone()),
        ("IMAGE_MIRROR_QUEUE_PREFIX", prefix.clone()),
        (
            "IMAGE_MIRROR_INSECURE_REGISTRIES",
            format!("{},{}", front.host(), dst.host()),
        ),
        ("DOCKER_CONFIG", dir.path().display().to_string()),
        (
            "IMAGE_MIRROR_CACHE_DIR",
            dir.path().join("cache").display().to_string(),
        ),
    ];
    let (worker_port, committer_port) = (free_port(), free_port());
    let worker = Role::start(dir.path(), &env, worker_port, &["worker"], "worker started");
    let committer = Role::start(
        dir.path(),
        &env,
        committer_port,
        &["committer", "--batch-window", "1s"],
        "committer started",
    );
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: [{rules}]\n\
         scrape_configs:\n\
         - job_name: image-mirror\n\
         \x20 static_configs:\n\
         \x20 - targets: ['127.0.0.1:{worker_port}']\n\
         \x20   labels: {{role: worker}}\n\
         \x20 - targets: ['127.0.0.1:{committer_port}']\n\
         \x20   labels: {{role: committer}}\n",
        rules = observability().join("alerts.yml").display()
    );
    let prometheus = Prometheus::start(&config);

    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["producer", "sync"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // The run, as Prometheus saw it.
    let within = Duration::from_secs(60);
    prometheus
        .wait_for(
            r#"sum(image_mirror_jobs_total{outcome="copied"})"#,
            within,
            |r| {
                r.first()
                    .and_then(|s| s["value"][1].as_str()?.parse::<u64>().ok())
                    == Some(IMAGES)
            },
        )
        .await;
    prometheus
        .wait_for(
            r#"sum(image_mirror_committer_batches_total{result="recorded"}) > 0"#,
            within,
            non_empty,
        )
        .await;
    let host = front.host();
    // The last answer read says what was left then (answers to concurrent requests may be
    // read in another order than the front sent them).
    let left = prometheus
        .value(&format!(
            r#"image_mirror_registry_quota_remaining{{registry="{host}"}}"#
        ))
        .await
        .unwrap();
    let spent = front.pulls();
    assert!(spent >= IMAGES, "{spent}");
    assert!(
        (QUOTA - spent) as f64 <= left && left < QUOTA as f64,
        "{left} left after {spent} pulls"
    );
    assert_eq!(
        prometheus
            .value(&format!(
                r#"image_mirror_registry_quota_limit{{registry="{host}"}}"#
            ))
            .await,
        Some(QUOTA as f64)
    );
    assert!(failed_once.load(Ordering::SeqCst));
    let retried = prometheus
        .value(r#"sum(image_mirror_retries_total{class="http_503"})"#)
        .await;
    assert!(retried.is_some_and(|n| n >= 1.0), "{retried:?}");

    // Every panel's query returns data, with the interval Grafana would put in.
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{}", queries.len());
    for (_, expr) in &queries {
        let expr = expr.replace("$__rate_interval", "1m");
        prometheus
            .wait_for(&expr, Duration::from_secs(20), non_empty)
            .await;
    }

    // Every alert expression is valid and evaluated by Prometheus without error; none fires
    // in a healthy run.
    let alerts = alerts();
    for (_, expr) in &alerts {
        prometheus.query(expr).await;
    }
    let deadline = std::time::Instant::now() + within;
    let rules = loop {
        let answer = prometheus.api("rules", &[]).await;
        let rules: Vec<Value> = answer["data"]["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let evaluated = rules.len() == alerts.len()
            && rules.iter().all(|r| {
                !r["lastEvaluation"]
                    .as_str()
                    .unwrap_or("0001")
                    .starts_with("0001")
            });
        if evaluated {
            break rules;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rules not evaluated: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
        assert_eq!(r["state"], "inactive", "{r}");
    }

    // The names the README documents are the ones served; the dashboard and the alerts use
    // no other.
    let names = prometheus.api("label/__name__/values", &[]).await;
    let names: Vec<&str> = names["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    let served = metric_names(&names.join(" "));
    let readme = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let table: String = readme
        .lines()
        .filter(|l| l.starts_with("| `image_mirror_"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        metric_names(&table),
        served,
        "docs/operations.md's metric table against what is served"
    );
    let used: String = queries
        .iter()
        .map(|(_, e)| e.as_str())
        .chain(alerts.iter().map(|(_, e)| e.as_str()))
        .collect::<Vec<_>>()
        .join(" ");
    let unknown: Vec<String> = metric_names(&used).difference(&served).cloned().collect();
    assert!(unknown.is_empty(), "not served: {unknown:?}");

    worker.stop();
    committer.stop();
    drop(prometheus);
    AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap()
        .delete_topology()
        .await
        .unwrap();
}

#[test]
fn compose_runs_prometheus_and_grafana_on_these_files() {
    let compose = yaml(&root().join("compose.yaml"));
    let services = &compose["services"];
    for name in ["prometheus", "grafana"] {
        let volumes = services[name]["volumes"].as_sequence().unwrap();
        let mut binds = 0;
        for v in volumes {
            let source = v.as_str().unwrap().split(':').next().unwrap();
            if let Some(path) = source.strip_prefix("./") {
                assert!(
                    root().join(path).exists(),
                    "{name}: {source} does not exist"
                );
                binds += 1;
            }
        }
        assert!(binds >= 2, "{name} mounts none of deploy/observability");
    }
    // Prometheus scrapes every compose role that serves metrics, on the port it serves.
    let config = yaml(&observability().join("prometheus.yml"));
    let sd = &config["scrape_configs"][0]["dns_sd_configs"][0];
    let scraped: BTreeSet<&str> = sd["names"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let serving: BTreeSet<&str> = services
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["environment"]["IMAGE_MIRROR_METRICS_ADDR"].is_string())
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(scraped, serving);
    assert_eq!(scraped.len(), 5);
    let addr = services["worker"]["environment"]["IMAGE_MIRROR_METRICS_ADDR"]
        .as_str()
        .unwrap();
    assert!(addr.ends_with(&format!(":{}", sd["port"].as_u64().unwrap())));
    // The data source the dashboard names is the one provisioned.
    let sources = yaml(&observability().join("grafana/provisioning/datasources/prometheus.yml"));
    assert_eq!(sources["datasources"][0]["uid"], "prometheus");
    assert_eq!(sources["datasources"][0]["url"], "http://prometheus:9090");
}
