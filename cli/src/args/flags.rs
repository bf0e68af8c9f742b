//! The flag groups: each command flattens the groups it uses, so it takes (and its `--help`
//! lists) only flags it reads. Each flag is also read from its environment variable, by the
//! commands that take it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use image_mirror_common::secret::Secret;
use image_mirror_registry::upload_limits::HostSize;

/// The images-list file.
#[derive(Debug, Args)]
#[command(next_help_heading = "Files")]
pub struct ListFlag {
    /// The images-list file.
    #[arg(
        long,
        env = "IMAGE_MIRROR_IMAGES_LIST",
        default_value = "images-list",
        value_name = "PATH"
    )]
    pub images_list: PathBuf,
}

/// images-list and config.json.
#[derive(Debug, Args)]
#[command(next_help_heading = "Files")]
pub struct FilesFlags {
    #[command(flatten)]
    pub list: ListFlag,
    /// The config.json file of tag discovery rules (its `referrers` and `digestTags` rules
    /// apply to every command that plans jobs).
    #[arg(
        long,
        env = "IMAGE_MIRROR_CONFIG",
        default_value = "config.json",
        value_name = "PATH"
    )]
    pub config: PathBuf,
}

impl FilesFlags {
    /// The images-list path.
    pub fn images_list(&self) -> &Path {
        &self.list.images_list
    }
}

/// What a command that plans jobs reads: the files, and where the targets go.
#[derive(Debug, Args)]
#[command(next_help_heading = "Targets")]
pub struct PlanFlags {
    #[command(flatten)]
    pub files: FilesFlags,
    /// Replace the targets' registry; several values mirror every entry to each of them.
    #[arg(
        long = "dest-registry",
        help_heading = "Targets",
        env = "DEST_REGISTRY_OVERRIDE",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub dest_registries: Vec<String>,
    /// Replace the targets' organisation.
    #[arg(
        long,
        help_heading = "Targets",
        env = "DEST_ORG_OVERRIDE",
        value_name = "ORG"
    )]
    pub dest_org: Option<String>,
    #[command(flatten)]
    pub platforms: PlatformsFlag,
}

impl PlanFlags {
    /// The images-list path.
    pub fn images_list(&self) -> &Path {
        self.files.images_list()
    }
}

/// How registries are reached: every command that asks one.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Registries")]
pub struct RegistryFlags {
    /// A registry host that may be reached over plain HTTP (repeatable).
    #[arg(
        long = "insecure-registry",
        env = "IMAGE_MIRROR_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub insecure_registries: Vec<String>,
    /// Deadline of every registry request that carries no blob body (manifests, tokens, tag
    /// pages, upload sessions, mounts), from sending it to the end of its answer (`30s`).
    #[arg(
        long,
        env = "IMAGE_MIRROR_REQUEST_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub request_timeout: Duration,
    /// How long a registry connection may take to open.
    #[arg(
        long,
        env = "IMAGE_MIRROR_CONNECT_TIMEOUT",
        default_value = "15s",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub connect_timeout: Duration,
    /// Pulls (manifest GETs) left untouched in every registry's quota, as its
    /// `ratelimit-remaining` reports it: at the reserve, pulls pause.
    #[arg(
        long,
        env = "IMAGE_MIRROR_RATE_LIMIT_RESERVE",
        default_value_t = 2,
        value_name = "PULLS"
    )]
    pub rate_limit_reserve: u64,
    /// The longest pause for a registry's rate limit that is waited out; a longer one defers
    /// the job (a worker: to a delay queue timed to the reset; `run`: reported, exit 1).
    #[arg(
        long,
        env = "IMAGE_MIRROR_RATE_LIMIT_MAX_WAIT",
        default_value = "5m",
        value_name = "DURATION",
        value_parser = super::parse_duration_or_zero
    )]
    pub rate_limit_max_wait: Duration,
}

/// How blobs move: every command that copies.
#[derive(Debug, Args)]
#[command(next_help_heading = "Blob transfers")]
pub struct TransferFlags {
    /// A blob body (up or down) that moves less than 64 KiB in this long is stalled: the
    /// transfer is cut and resumed.
    #[arg(
        long,
        env = "IMAGE_MIRROR_STALL_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub stall_timeout: Duration,
    /// Bytes per request of a chunked blob upload to a registry, as HOST=SIZE (`ghcr.io=4MiB`;
    /// repeatable). Known hosts start with their known limits (ghcr.io: 4 MiB requests; ECR:
    /// parts of at least 5 MiB), and a registry that refuses a request as too large teaches
    /// the process a smaller size.
    #[arg(
        long = "blob-chunk",
        env = "IMAGE_MIRROR_BLOB_CHUNK",
        value_delimiter = ',',
        value_name = "HOST=SIZE"
    )]
    pub blob_chunk: Vec<HostSize>,
    /// The largest blob sent to a registry in one request, as HOST=SIZE (repeatable); larger
    /// blobs go in chunks. Default 16 MiB, less where the registry takes less.
    #[arg(
        long = "blob-max",
        env = "IMAGE_MIRROR_BLOB_MAX",
        value_delimiter = ',',
        value_name = "HOST=SIZE"
    )]
    pub blob_max: Vec<HostSize>,
    /// Folder for the cache of where blobs live in target registries (for mounts across
    /// runs); default `$XDG_CACHE_HOME/image-mirror` or `~/.cache/image-mirror`.
    #[arg(long, env = "IMAGE_MIRROR_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Cap blob transfers at RATE (`40MiB/s`; B/s, KB/s, KiB/s, MB/s, MiB/s, GB/s, GiB/s), or
    /// what is read from and written to one registry at HOST=RATE (repeatable). A fleet's
    /// workers (`--fleet on`) share the cap: it is the fleet's, not each worker's.
    #[arg(
        long = "max-bandwidth",
        env = "IMAGE_MIRROR_MAX_BANDWIDTH",
        value_delimiter = ',',
        value_name = "[HOST=]RATE"
    )]
    pub max_bandwidth: Vec<image_mirror_common::rate::HostRate>,
    /// How long a target tag seen to hold the source's digest is trusted to still hold it (a
    /// record in the cache folder): within it, a tag whose source still answers that digest
    /// is not asked at the target. `0` asks every target every time. A tag changed or deleted
    /// at the target by someone else is seen once its record is this old.
    #[arg(
        long,
        env = "IMAGE_MIRROR_TARGET_RECORD_MAX_AGE",
        default_value = "1h",
        value_name = "DURATION",
        value_parser = super::parse_duration_or_zero
    )]
    pub target_record_max_age: Duration,
}

/// Which platforms of each index are mirrored.
#[derive(Debug, Args)]
#[command(next_help_heading = "Platforms")]
pub struct PlatformsFlag {
    /// Only these platforms of each index (`os/arch[/variant]`, comma list, such as
    /// `linux/amd64,linux/arm64`); a config.json rule's `platforms` wins for its images.
    /// The source's index is kept, digest and all, where the target takes it with only these
    /// present; see --on-sparse-refused for targets that do not.
    #[arg(
        long,
        env = "IMAGE_MIRROR_PLATFORMS",
        value_name = "OS/ARCH,...",
        value_parser = parse_platforms
    )]
    pub platforms: Option<image_mirror_common::Platforms>,
}

/// A platform list as `--platforms` takes it; an unknown platform is named.
fn parse_platforms(text: &str) -> Result<image_mirror_common::Platforms, String> {
    text.parse()
        .map_err(|e: image_mirror_common::PlatformError| e.to_string())
}

/// What a target that refuses a sparse index gets.
#[derive(Debug, Args)]
#[command(next_help_heading = "Platforms")]
pub struct SparseFlag {
    /// When a target refuses the source's index with only the chosen platforms present (most
    /// registries do): `rewrite` pushes a new index listing only them (a new digest, recorded
    /// beside the source's), `fail` fails the entry, so that a digest is kept or nothing is
    /// mirrored.
    #[arg(
        long,
        env = "IMAGE_MIRROR_ON_SPARSE_REFUSED",
        default_value = "rewrite",
        value_parser = ["rewrite", "fail"]
    )]
    pub on_sparse_refused: String,
}

impl SparseFlag {
    /// The copy engine's policy.
    pub fn policy(&self) -> image_mirror_worker::OnSparseRefused {
        if self.on_sparse_refused == "fail" {
            image_mirror_worker::OnSparseRefused::Fail
        } else {
            image_mirror_worker::OnSparseRefused::Rewrite
        }
    }
}

/// Docker Hub's web API: commands that check whether a new target repository exists.
#[derive(Debug, Args)]
#[command(next_help_heading = "Discovery")]
pub struct HubFlag {
    /// Docker Hub's web API, asked whether a new Docker Hub target repository exists.
    #[arg(
        long,
        env = "IMAGE_MIRROR_DOCKER_HUB_API",
        default_value = image_mirror_registry::dockerhub::DEFAULT_HUB_API,
        value_name = "URL"
    )]
    pub docker_hub_api: String,
}

/// What running config.json's rules needs beyond the registries.
#[derive(Debug, Args)]
#[command(next_help_heading = "Discovery")]
pub struct DiscoveryFlags {
    #[command(flatten)]
    pub hub: HubFlag,
    /// The helm program that renders the charts of `helm-latest` rules: a path, or a name
    /// looked up on PATH.
    #[arg(
        long,
        env = "IMAGE_MIRROR_HELM",
        default_value = "helm",
        value_name = "PATH"
    )]
    pub helm: PathBuf,
}

/// The broker: every role that publishes or consumes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Broker")]
pub struct BrokerFlags {
    /// RabbitMQ URL, or a cluster's nodes' URLs comma-separated (a role whose node goes moves
    /// to another); for `run` and `add-tag`, absent means the in-memory queue.
    #[arg(
        long,
        env = "AMQP_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = |s: &str| Ok::<_, String>(Secret::new(s))
    )]
    pub amqp_url: Option<Secret>,
    /// Prefix of every RabbitMQ queue and exchange name (several systems can share a broker).
    #[arg(
        long,
        env = "IMAGE_MIRROR_QUEUE_PREFIX",
        default_value = "mirror",
        value_name = "PREFIX"
    )]
    pub queue_prefix: String,
    /// Delays before each retry of a job that failed for now (a job gets one attempt more
    /// than there are delays). Every role on one queue prefix must give the same: each delay
    /// is a RabbitMQ queue. Default 10s,30s,2m,10m,30m; in one process (run, add-tag
    /// without --amqp-url) 2s,5s,15s,30s,1m.
    #[arg(
        long,
        env = "IMAGE_MIRROR_RETRY_DELAYS",
        value_name = "DELAYS",
        value_parser = parse_retries
    )]
    pub retry_delays: Option<image_mirror_queue::JobRetries>,
    /// How long a connection to RabbitMQ may take to open (`10s`, `1m`). A command that
    /// runs once fails after it, naming the broker; a long-running role (worker,
    /// committer, a repeating producer) says so and tries again.
    #[arg(
        long,
        env = "IMAGE_MIRROR_AMQP_CONNECT_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub amqp_connect_timeout: Duration,
}

/// How results are written on stdout.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputFlag {
    /// `text` for people, or `json`: one JSON document on stdout, its shape documented in the
    /// README (reference/output.md).
    #[arg(
        long,
        env = "IMAGE_MIRROR_OUTPUT",
        value_enum,
        default_value_t = OutputFormat::Text
    )]
    pub output: OutputFormat,
}

impl OutputFlag {
    /// Whether results are one JSON document.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON document.
    Json,
}

/// How progress is shown while blobs move.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct ProgressFlags {
    /// Without a terminal on stderr (CI, a pipe, Kubernetes), how often a line of progress is
    /// written while work goes on (`10s`, `1m`). On a terminal the display is live; `-q`
    /// silences both.
    #[arg(
        long,
        env = "IMAGE_MIRROR_PROGRESS_INTERVAL",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub progress_interval: Duration,
}

/// The metrics and health endpoint of a long-running role.
#[derive(Debug, Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsFlag {
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, env = "IMAGE_MIRROR_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

fn parse_retries(text: &str) -> Result<image_mirror_queue::JobRetries, String> {
    image_mirror_queue::JobRetries::parse(text).map_err(|e| e.to_string())
}

/// Telling people when a run ends, a job is dead-lettered, a pull request is opened.
#[derive(Debug, Args)]
#[command(next_help_heading = "Notifications")]
pub struct NotifyFlags {
    /// Send a notice to this http(s) URL (repeatable; comma list in the variable): a
    /// CloudEvent (1.0, structured JSON) unless --notify-format says otherwise. A delivery
    /// never changes the exit status.
    #[arg(
        long = "notify",
        env = "IMAGE_MIRROR_NOTIFY",
        value_delimiter = ',',
        value_name = "URL",
        hide_env_values = true,
        value_parser = |s: &str| Ok::<_, String>(Secret::new(s))
    )]
    pub notify: Vec<Secret>,
    /// The notices' format: `cloudevents`, or `slack` (an incoming webhook's message).
    #[arg(
        long,
        env = "IMAGE_MIRROR_NOTIFY_FORMAT",
        default_value = "cloudevents",
        value_name = "FORMAT"
    )]
    pub notify_format: image_mirror_notify::Format,
    /// Which notices are sent: `failure` (a run that failed, drifted or deferred something,
    /// and dead-lettered jobs), `change` (anything copied or failed, and pull requests), or
    /// `always`.
    #[arg(
        long,
        env = "IMAGE_MIRROR_NOTIFY_ON",
        default_value = "failure",
        value_name = "WHEN"
    )]
    pub notify_on: image_mirror_notify::NotifyOn,
    /// Sign each notice's body: an HMAC-SHA256 with this secret in the header
    /// `X-Image-Mirror-Signature-256: sha256=<hex>` (as GitHub signs webhooks). Never logged.
    #[arg(
        long,
        env = "IMAGE_MIRROR_NOTIFY_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        value_parser = |s: &str| Ok::<_, String>(Secret::new(s))
    )]
    pub notify_secret: Option<Secret>,
    /// The longest a notice's delivery may take, retries included (each attempt at most
    /// 10 s); the run ends no later for it.
    #[arg(
        long,
        env = "IMAGE_MIRROR_NOTIFY_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub notify_timeout: Duration,
}

impl NotifyFlags {
    /// The options of a notifier for `role`.
    pub fn options(&self, role: &str) -> image_mirror_notify::NotifyOptions {
        let urls = self.notify.iter().map(|u| u.expose().to_owned()).collect();
        let mut o = image_mirror_notify::NotifyOptions::new(urls, role);
        o.format = self.notify_format;
        o.on = self.notify_on;
        o.secret.clone_from(&self.notify_secret);
        o.budget = self.notify_timeout;
        o.attempt_timeout = o.attempt_timeout.min(self.notify_timeout);
        o
    }
}

/// The policy hook: asked before anything of an image is written.
#[derive(Debug, Args)]
#[command(next_help_heading = "Policy")]
pub struct PolicyFlags {
    /// Ask this executable before an image is written: the copy as JSON on its stdin, its
    /// answer `{"decision": "allow"|"deny"|"defer", "reason": …}` on stdout. A deny fails the
    /// copy as `policy_denied` (not retried, nothing written); a defer puts it off.
    #[arg(long, env = "IMAGE_MIRROR_POLICY_HOOK", value_name = "PATH")]
    pub policy_hook: Option<PathBuf>,
    /// The longest the hook may take to answer.
    #[arg(
        long,
        env = "IMAGE_MIRROR_POLICY_HOOK_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub policy_hook_timeout: Duration,
    /// What a hook that fails, times out or answers anything else gets: `closed` (denied, the
    /// default) or `open` (allowed, with a warning).
    #[arg(
        long,
        env = "IMAGE_MIRROR_POLICY_HOOK_FAIL",
        default_value = "closed",
        value_name = "closed|open"
    )]
    pub policy_hook_fail: image_mirror_worker::copy::OnHookFailure,
    /// How long a copy the hook defers waits before it is tried again (a worker's job waits
    /// in a delay queue; `run` reports it deferred).
    #[arg(
        long,
        env = "IMAGE_MIRROR_POLICY_HOOK_DEFER",
        default_value = "10m",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub policy_hook_defer: Duration,
}

impl PolicyFlags {
    /// The hook, when one is given.
    pub fn hook(&self) -> Option<image_mirror_worker::copy::PolicyHook> {
        self.policy_hook
            .as_ref()
            .map(|path| image_mirror_worker::copy::PolicyHook {
                path: path.clone(),
                timeout: self.policy_hook_timeout,
                on_failure: self.policy_hook_fail,
                defer_for: self.policy_hook_defer,
            })
    }
}
