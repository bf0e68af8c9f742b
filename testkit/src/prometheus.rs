//! A real Prometheus (Debian's `prometheus` package) on a free loopback port, with a
//! configuration of the test's own, and its HTTP API: instant queries, the rules it evaluates,
//! the metric names it holds.

use std::io::BufReader;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ports::free_port;
use crate::process;

/// The Prometheus server binary.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A running Prometheus; stopped when dropped.
pub struct Prometheus {
    child: Child,
    port: u16,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML) and returns once it says it is ready.
    pub fn start(config: &str) -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: apt-get install prometheus"
        );
        let dir = tempfile::tempdir().expect("a folder for Prometheus");
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        let port = free_port();
        let mut child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prometheus");
        let mut logs = BufReader::new(child.stderr.take().expect("stderr"));
        process::wait_for_line(
            &mut logs,
            "Server is ready to receive web requests",
            "prometheus",
        );
        process::drain(logs);
        Self {
            child,
            port,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /api/v1/<path>` with `query`; the whole answer, which must say `success`.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let answer: Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.url()))
            .query(query)
            .send()
            .await
            .expect("ask prometheus")
            .json()
            .await
            .expect("prometheus answers JSON");
        assert_eq!(answer["status"], "success", "{path} {query:?}: {answer}");
        answer
    }

    /// The result of the instant query `expr`: one entry per series.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let answer = self.api("query", &[("query", expr)]).await;
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of the single series `expr` gives, if it gives exactly one.
    pub async fn value(&self, expr: &str) -> Option<f64> {
        match self.query(expr).await.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Asks `expr` until `done` holds for its result, or panics after `within`.
    pub async fn wait_for(
        &self,
        expr: &str,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let result = self.query(expr).await;
            if done(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{expr}: not as expected within {within:?}: {result:?}"
            );
            // The next scrape or rule evaluation (every second in tests) may change it.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
