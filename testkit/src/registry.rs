//! A private registry per test: CNCF distribution 2.8 (Debian's `docker-registry`) or
//! distribution 3 (built by `scripts/go-tools`), on its own port on 127.0.0.1, its own storage
//! in a temporary folder, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::ports::free_port;

const DISTRIBUTION_2: &str = "/usr/bin/docker-registry";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running registry.
pub struct Registry {
    child: Child,
    host: String,
    scheme: &'static str,
    storage: PathBuf,
    log: Arc<Log>,
    binary: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

enum Startup {
    Listening,
    Exited,
}

impl Registry {
    /// Starts a registry without authentication; panics when it cannot.
    pub fn start() -> Self {
        Self::start_with(&RegistryOptions::default())
    }

    /// Starts a registry with the given options; panics when it cannot.
    pub fn start_with(options: &RegistryOptions) -> Self {
        let mut last_log = Vec::new();
        for _ in 0..5 {
            match Self::try_start(options) {
                Ok(r) => return r,
                Err(log) => last_log = log,
            }
        }
        panic!(
            "{} did not start:\n{}",
            options.implementation.binary().display(),
            last_log.join("\n")
        );
    }

    fn try_start(options: &RegistryOptions) -> Result<Self, Vec<String>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = config(options, &storage, &host);
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let binary = options.implementation.binary();
        let (child, log) = spawn(&binary, &config_path)?;
        Ok(Self {
            child,
            host,
            scheme: if options.tls.is_some() {
                "https"
            } else {
                "http"
            },
            storage,
            log,
            binary,
            config: config_path,
            _dir: dir,
        })
    }

    /// Stops the registry with SIGKILL and starts it again on the same port and storage (the
    /// same secret, so upload sessions it kept on disk can go on); panics when it cannot.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        match spawn(&self.binary, &self.config) {
            Ok((child, log)) => {
                self.child = child;
                self.log = log;
            }
            Err(log) => panic!("the registry did not start again:\n{}", log.join("\n")),
        }
    }
}

/// Starts `binary serve config`, returned once it listens; its log lines otherwise.
fn spawn(binary: &Path, config: &Path) -> Result<(Child, Arc<Log>), Vec<String>> {
    let mut child = Command::new(binary)
        .arg("serve")
        .arg(config)
        // distribution 3 exports traces over OTLP unless told not to.
        .env("OTEL_TRACES_EXPORTER", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let stderr = child.stderr.take().expect("piped stderr");
    let stdout = child.stdout.take().expect("piped stdout");
    let log = Arc::new(Log::default());
    let access = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            access.push(line);
        }
    });
    let (tx, rx) = mpsc::channel();
    let thread_log = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut announced = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let listening = line.contains("msg=\"listening on ");
            thread_log.push(line);
            if listening && !announced {
                announced = true;
                let _ = tx.send(Startup::Listening);
            }
        }
        let _ = tx.send(Startup::Exited);
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(Startup::Listening) => Ok((child, log)),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err(log.lines.lock().expect("log lock").clone())
        }
    }
}

impl Registry {
    /// `127.0.0.1:PORT`, as image references and `--insecure-registry` take it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// CPU seconds (user + system) the registry process has used so far, from
    /// `/proc/PID/stat`; 0 where that cannot be read.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime (fields 14 and 15 of the line; 11 and 12 here, counted from 0 after
        // the pid and the name) are in USER_HZ, 100 on Linux.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// `http://127.0.0.1:PORT` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// The storage folder, for tests that tamper with stored blobs.
    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// Where the registry keeps the bytes of a blob (`sha256:…`).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let (algo, hex) = digest.split_once(':').expect("algorithm:hex");
        self.storage
            .join("docker/registry/v2/blobs")
            .join(algo)
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The lines the registry has logged so far (its own log and its access log).
    pub fn log(&self) -> Vec<String> {
        self.log.lines.lock().expect("log lock").clone()
    }

    /// Waits until a logged request (`METHOD PATH`, as [`requests`](Self::requests) gives
    /// them) satisfies `predicate`; false when `timeout` passes first.
    pub fn wait_for_request(&self, predicate: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut lines = self.log.lines.lock().expect("log lock");
        loop {
            if lines
                .iter()
                .filter_map(|l| request_of(l))
                .any(|r| predicate(&r))
            {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            lines = self.log.grew.wait_timeout(lines, left).expect("log lock").0;
        }
    }

    /// Waits until the log holds `count` lines that contain `needle` (the registry writes its
    /// log on its own time); the count found when `timeout` passes first.
    pub fn wait_for_log_lines(&self, needle: &str, count: usize, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        let mut lines = self.log.lines.lock().expect("log lock");
        loop {
            let found = lines.iter().filter(|l| l.contains(needle)).count();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if found >= count || left.is_zero() {
                return found;
            }
            lines = self.log.grew.wait_timeout(lines, left).expect("log lock").0;
        }
    }

    /// The requests of the access log so far, as `METHOD PATH` (query left out).
    pub fn requests(&self) -> Vec<String> {
        self.log().iter().filter_map(|l| request_of(l)).collect()
    }

    /// How many requests so far wrote blob data (upload `POST`, `PATCH`, `PUT`).
    pub fn blob_writes(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.contains("/blobs/uploads/") && !r.starts_with("GET") && !r.starts_with("DELETE")
            })
            .count()
    }
}

/// The registry's log lines, with a condition variable signalled on each new line.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

impl Log {
    fn push(&self, line: String) {
        self.lines.lock().expect("log lock").push(line);
        self.grew.notify_all();
    }
}

/// `METHOD PATH` of an access-log line (query left out).
fn request_of(line: &str) -> Option<String> {
    let start = line.find('"')? + 1;
    let mut parts = line[start..].split(' ');
    let method = parts.next()?;
    let path = parts.next()?;
    if !matches!(method, "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE") {
        return None;
    }
    let path = path.split('?').next().unwrap_or(path);
    Some(format!("{method} {path}"))
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which registry implementation a test runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// CNCF distribution 2.8: Debian's `docker-registry` package.
    #[default]
    Distribution2,
    /// CNCF distribution 3, as `scripts/go-tools` builds it.
    Distribution3,
}

impl Implementation {
    /// Both implementations, for tests that run against each.
    pub const ALL: [Implementation; 2] = [Self::Distribution2, Self::Distribution3];

    fn binary(self) -> PathBuf {
        match self {
            Self::Distribution2 => PathBuf::from(DISTRIBUTION_2),
            Self::Distribution3 => crate::tools::path("registry"),
        }
    }
}

/// How to configure a test registry.
#[derive(Debug, Default, Clone)]
pub struct RegistryOptions {
    /// distribution 2.8 (the default) or 3.
    pub implementation: Implementation,
    /// An htpasswd file (bcrypt entries) to require basic auth with.
    pub htpasswd_file: Option<PathBuf>,
    /// A certificate and its key to serve TLS with (see [`crate::tls::TestCa`]).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Token auth: the realm, and the certificate tokens are signed with.
    pub token: Option<(String, PathBuf)>,
    /// Maintenance mode: reads are served, every write is refused with 405.
    pub read_only: bool,
    /// distribution 3 only: an index is taken whatever platforms of it the registry holds
    /// (`validation: manifests: indexes: platforms: none`), a sparse index included.
    pub sparse_indexes: bool,
    /// `Location`s relative to the request (`http: relativeurls: true`), for a registry behind
    /// a TLS terminator (it sees plain HTTP, its clients speak HTTPS).
    pub relative_urls: bool,
}

impl RegistryOptions {
    /// Basic auth with one user, written to an htpasswd file in `dir`.
    pub fn with_user(dir: &Path, user: &str, password: &str) -> Self {
        let hash = bcrypt::hash(password, 5).expect("bcrypt");
        let path = dir.join("htpasswd");
        std::fs::write(&path, format!("{user}:{hash}\n")).expect("write htpasswd");
        Self {
            htpasswd_file: Some(path),
            ..Self::default()
        }
    }

    /// The same options for another implementation.
    pub fn on(self, implementation: Implementation) -> Self {
        Self {
            implementation,
            ..self
        }
    }

    /// distribution 3 taking sparse indexes (see [`RegistryOptions::sparse_indexes`]).
    pub fn sparse_indexes() -> Self {
        Self {
            implementation: Implementation::Distribution3,
            sparse_indexes: true,
            ..Self::default()
        }
    }

    /// Token auth through `server` (see [`crate::token::TokenServer`]).
    pub fn with_token(server: &crate::token::TokenServer) -> Self {
        Self {
            token: Some((server.realm(), server.cert().to_owned())),
            ..Self::default()
        }
    }

    /// TLS with the server certificate of `ca`.
    pub fn with_tls(ca: &crate::tls::TestCa) -> Self {
        Self {
            tls: Some((ca.server_cert.clone(), ca.server_key.clone())),
            ..Self::default()
        }
    }
}

/// The registry's configuration: filesystem storage with deletes (read-only when asked), the
/// address, and the options' TLS and auth. distribution 2.8 and 3 read the same keys.
fn config(options: &RegistryOptions, storage: &Path, host: &str) -> String {
    let read_only = if options.read_only {
        "  maintenance:\n    readonly:\n      enabled: true\n"
    } else {
        ""
    };
    let mut config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  \
         filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{read_only}http:\n  addr: \
         {host}\n  secret: image-mirror-test\n",
        storage.display()
    );
    if options.relative_urls {
        config.push_str("  relativeurls: true\n");
    }
    if let Some((cert, key)) = &options.tls {
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
    }
    if let Some((realm, cert)) = &options.token {
        config.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    \
             rootcertbundle: {}\n",
            crate::token::SERVICE,
            crate::token::ISSUER,
            cert.display()
        ));
    }
    if let Some(htpasswd) = &options.htpasswd_file {
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: image-mirror-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    // A top-level key: after the `http` section's indented ones.
    if options.sparse_indexes {
        config.push_str("validation:\n  manifests:\n    indexes:\n      platforms: none\n");
    }
    config
}
