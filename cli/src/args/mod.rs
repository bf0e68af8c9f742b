//! The command line: the commands, each with the flag groups it uses, and the one global
//! flag (the log format).

mod flags;
mod reorder;

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

pub use flags::{
    BrokerFlags, DiscoveryFlags, FilesFlags, HubFlag, ListFlag, MetricsFlag, NotifyFlags,
    OutputFlag, PlanFlags, PlatformsFlag, PolicyFlags, ProgressFlags, RegistryFlags, SparseFlag,
    TransferFlags,
};
pub use help::grouped;
pub use reorder::{parse, Parsed};

mod help;

/// What `--version` says: the version, the commit built and the day.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("IMAGE_MIRROR_BUILD_COMMIT"),
    ", built ",
    env!("IMAGE_MIRROR_BUILD_DATE"),
    ")"
);

/// Mirror container images byte for byte into your own namespace, and keep images-list up to
/// date.
///
/// Each command takes the flags it uses, after it: `image-mirror COMMAND --help` lists them.
///
/// Exit status: 0 all done, 1 something failed (a job, a check), 2 bad usage or bad input,
/// 130 interrupted (Ctrl-C), 141 stdout closed.
#[derive(Debug, Parser)]
#[command(name = "image-mirror", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command reads.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "IMAGE_MIRROR_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// More log lines: `-v` this program's DEBUG lines, `-vv` every library's too, `-vvv`
    /// TRACE (`RUST_LOG`, when set, decides instead).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// No progress display, and only warnings and errors on stderr.
    #[arg(
        short,
        long,
        global = true,
        env = "IMAGE_MIRROR_QUIET",
        conflicts_with = "verbose"
    )]
    pub quiet: bool,
}

pub use crate::console::LogFormat;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Put images-list in `sort -V` order, or check that it is.
    Sort(SortArgs),
    /// Parse images-list and config.json and report every error.
    Validate(ValidateArgs),
    /// Copy one image (tag or digest), every platform, byte for byte; no queue.
    Copy(CopyArgs),
    /// Publish jobs to RabbitMQ.
    #[command(subcommand)]
    Producer(ProducerCommand),
    /// Consume jobs from RabbitMQ, copy, publish events.
    Worker(WorkerArgs),
    /// Consume completion events from RabbitMQ and record the mirrored tags in images-list: a
    /// pull request per batch (--github-repo), or the local file edited in place.
    Committer(CommitterArgs),
    /// Monolithic mode: plan every images-list entry, mirror it with N workers and collect the
    /// events, in one process (in-memory queue unless --amqp-url).
    Run(RunArgs),
    /// What `run` would cost, before it runs: per target registry the manifests and blobs it
    /// lacks, the bytes to send and those mounts and shared blobs save; per source the pulls
    /// reading manifests spends; the time under --max-bandwidth. No blob is read.
    Plan(PlanArgs),
    /// Ready messages and consumers per queue.
    Status(StatusArgs),
    /// For each config.json key (or those named): the images, the tags found, the new ones,
    /// and any error, as JSON on stdout. Nothing is published.
    Tags(TagsArgs),
    /// Add tags of images already in images-list: checked, then mirrored and recorded here
    /// (no --amqp-url) or published as jobs for the committer to record.
    AddTag(AddTagArgs),
    /// Add new images (SOURCE:TAG), each to `<org>/mirrored-<source path>`: checked (not
    /// listed, the tag exists, the target repository exists or is created on push), then
    /// mirrored and recorded here or published for the committer.
    AddImage(AddImageArgs),
    /// The entries added to images-list since a git revision must name source tags that
    /// exist, and target repositories that exist.
    Check(CheckArgs),
    /// Write every images-list entry's image into one bundle (an OCI image layout, each blob
    /// once, with a lock), to carry across an air gap; --since OLD.lock: only what changed.
    Export(ExportArgs),
    /// Push the images of a bundle (image-mirror's, skopeo's, regctl's, crane's) to a
    /// registry, digest-exact, checked complete before anything is written.
    Import(ImportArgs),
    /// Serve a bundle as a read-only registry, to pull from or copy from.
    Serve(ServeArgs),
    /// Print a shell completion script: `image-mirror completions bash > /etc/bash_completion.d/image-mirror`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a folder.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `image-mirror.1` and a page per command (`image-mirror-copy.1`, …) here instead
    /// of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// Only these keys of config.json.
    #[arg(value_name = "KEY")]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub plan: PlanFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub discovery: DiscoveryFlags,
}

/// The tags `add-tag` adds.
#[derive(Debug, Args)]
pub struct TagsToAdd {
    /// Source images, as images-list writes them (comma list).
    #[arg(
        long,
        env = "IMAGES",
        value_delimiter = ',',
        required = true,
        value_name = "IMAGE,..."
    )]
    pub images: Vec<String>,
    /// Tags to add to every image (comma list).
    #[arg(
        long,
        env = "TAGS",
        value_delimiter = ',',
        required = true,
        value_name = "TAG,..."
    )]
    pub tags: Vec<String>,
}

/// The images `add-image` adds.
#[derive(Debug, Args)]
pub struct ImagesToAdd {
    /// Full references of the images to add, `SOURCE:TAG` (comma list).
    #[arg(
        long,
        env = "FULL_IMAGES",
        value_delimiter = ',',
        required = true,
        value_name = "SOURCE:TAG,..."
    )]
    pub images: Vec<String>,
    /// The organisation new images go to (default: the one most images-list targets use).
    #[arg(long, env = "IMAGE_MIRROR_TARGET_ORG", value_name = "ORG")]
    pub target_org: Option<String>,
}

/// What adding lines reads, whether they are mirrored here or published: the files and
/// targets, the registries that check them, the broker.
#[derive(Debug, Args)]
pub struct AddFlags {
    #[command(flatten)]
    pub plan: PlanFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
}

/// How lines are mirrored here (without --amqp-url).
#[derive(Debug, Args)]
pub struct HereFlags {
    /// Jobs in progress at once when mirroring here.
    #[arg(long, env = "IMAGE_MIRROR_WORKERS", default_value_t = 4)]
    pub workers: u16,
    #[command(flatten)]
    pub sparse: SparseFlag,
    #[command(flatten)]
    pub progress: ProgressFlags,
    #[command(flatten)]
    pub transfer: TransferFlags,
    #[command(flatten)]
    pub metrics: MetricsFlag,
}

#[derive(Debug, Args)]
pub struct AddTagArgs {
    #[command(flatten)]
    pub what: TagsToAdd,
    #[command(flatten)]
    pub add: AddFlags,
    #[command(flatten)]
    pub here: HereFlags,
}

#[derive(Debug, Args)]
pub struct AddImageArgs {
    #[command(flatten)]
    pub what: ImagesToAdd,
    #[command(flatten)]
    pub hub: HubFlag,
    #[command(flatten)]
    pub add: AddFlags,
    #[command(flatten)]
    pub here: HereFlags,
}

#[derive(Debug, Args)]
pub struct ProducerAddTagArgs {
    #[command(flatten)]
    pub what: TagsToAdd,
    #[command(flatten)]
    pub add: AddFlags,
}

#[derive(Debug, Args)]
pub struct ProducerAddImageArgs {
    #[command(flatten)]
    pub what: ImagesToAdd,
    #[command(flatten)]
    pub hub: HubFlag,
    #[command(flatten)]
    pub add: AddFlags,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The git revision to compare images-list with.
    #[arg(
        long,
        env = "IMAGE_MIRROR_CHECK_BASE",
        default_value = "origin/main",
        value_name = "REV"
    )]
    pub base: String,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub plan: PlanFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub hub: HubFlag,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Jobs in progress at once (the prefetch).
    #[arg(long, env = "IMAGE_MIRROR_WORKER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// How long jobs in progress may take to finish after SIGTERM/SIGINT (`30s`); then
    /// their copies stop at their next checkpoint and the jobs go back to the queue.
    #[arg(
        long,
        alias = "grace-seconds",
        env = "IMAGE_MIRROR_SHUTDOWN_GRACE",
        default_value = "30s",
        value_name = "DURATION",
        value_parser = parse_duration_or_zero
    )]
    pub grace: std::time::Duration,
    #[command(flatten)]
    pub drift: DriftArgs,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub platforms: PlatformsFlag,
    #[command(flatten)]
    pub sparse: SparseFlag,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Act as one with the other workers of the broker: each large blob sent to a registry
    /// once, mounted by the others, an unfinished upload taken over where it stopped (`off`:
    /// each worker on its own).
    #[arg(long, env = "IMAGE_MIRROR_FLEET", default_value = "on", value_parser = ["on", "off"])]
    pub fleet: String,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub transfer: TransferFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub metrics: MetricsFlag,
    #[command(flatten)]
    pub notify: NotifyFlags,
}

impl Command {
    /// The role this command plays, for the service name of its traces.
    pub fn role(&self) -> &'static str {
        match self {
            Self::Producer(_) => "producer",
            Self::Worker(_) => "worker",
            Self::Committer(_) => "committer",
            Self::Run(_) => "run",
            _ => "cli",
        }
    }
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bundle: a folder, made when absent (an existing bundle is gone on with: what it
    /// holds is not written again), or a `.tar` file, written as a stream (each blob once,
    /// never a second copy on disk).
    #[arg(long, value_name = "DIR|FILE.tar")]
    pub output: PathBuf,
    /// Cut the tar into parts of at most this size (`FILE.tar.000`, `.001`, …, with a
    /// `SHA256SUMS`): `2GiB`, `700MB`.
    #[arg(long, value_name = "SIZE", value_parser = parse_split)]
    pub split: Option<u64>,
    /// Only what the bundle of this lock does not hold: a delta bundle, to import on top of
    /// that one.
    #[arg(long, value_name = "OLD.lock")]
    pub since: Option<PathBuf>,
    /// Read each image from its target (the mirror this tool keeps) instead of its source.
    #[arg(long)]
    pub from_target: bool,
    /// Only entries whose line (`source target tag`) matches this regex.
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Images read at once.
    #[arg(long, env = "IMAGE_MIRROR_WORKERS", default_value_t = 4)]
    pub workers: u16,
    /// Write every image's event as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub plan: PlanFlags,
    #[command(flatten)]
    pub progress: ProgressFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub transfer: TransferFlags,
    #[command(flatten)]
    pub metrics: MetricsFlag,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle: an OCI image layout folder, or a tar of one (read in place).
    #[arg(long, value_name = "DIR|FILE.tar")]
    pub input: PathBuf,
    /// The registry the images go to (their repository paths and tags kept).
    #[arg(
        long = "dest-registry",
        env = "DEST_REGISTRY_OVERRIDE",
        value_name = "HOST[:PORT]"
    )]
    pub dest_registry: String,
    /// Replace the first component of each repository path.
    #[arg(long, env = "DEST_ORG_OVERRIDE", value_name = "ORG")]
    pub dest_org: Option<String>,
    /// The repository of images a bundle names by tag alone (regctl's, crane's and oras's
    /// layouts) or not at all.
    #[arg(long, value_name = "PATH")]
    pub repository: Option<String>,
    #[command(flatten)]
    pub sparse: SparseFlag,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Images pushed at once.
    #[arg(long, env = "IMAGE_MIRROR_WORKERS", default_value_t = 4)]
    pub workers: u16,
    /// Write every image's event as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub drift: DriftArgs,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub progress: ProgressFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub transfer: TransferFlags,
    #[command(flatten)]
    pub metrics: MetricsFlag,
    #[command(flatten)]
    pub notify: NotifyFlags,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The bundle: an OCI image layout folder, or a tar of one (read in place).
    #[arg(long, value_name = "DIR|FILE.tar")]
    pub input: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "HOST:PORT")]
    pub addr: std::net::SocketAddr,
    /// The repository of images a bundle names by tag alone, or not at all.
    #[arg(long, value_name = "PATH")]
    pub repository: Option<String>,
}

#[derive(Debug, Args)]
pub struct CommitterArgs {
    /// The folder of the history of batches (`runs.json`, read by `status --runs`); default
    /// `$XDG_CACHE_HOME/image-mirror` or `~/.cache/image-mirror`.
    #[arg(long, env = "IMAGE_MIRROR_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The GitHub repository holding images-list; without it, the local file is edited.
    #[arg(long, env = "IMAGE_MIRROR_GITHUB_REPO", value_name = "OWNER/REPO")]
    pub github_repo: Option<String>,
    /// The branch pull requests go into.
    #[arg(
        long,
        env = "IMAGE_MIRROR_BASE_BRANCH",
        default_value = "main",
        value_name = "BRANCH"
    )]
    pub base_branch: String,
    /// The path of images-list in the GitHub repository.
    #[arg(
        long,
        env = "IMAGE_MIRROR_GITHUB_PATH",
        default_value = "images-list",
        value_name = "PATH"
    )]
    pub github_path: String,
    /// The label of each pull request (empty: none).
    #[arg(
        long,
        env = "IMAGE_MIRROR_PR_LABEL",
        default_value = "image-mirror",
        value_name = "LABEL"
    )]
    pub label: String,
    /// How long a batch stays open after its first event (`30s`, `5m`).
    #[arg(long, env = "IMAGE_MIRROR_BATCH_WINDOW", default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub batch_window: std::time::Duration,
    /// The most events in one batch.
    #[arg(long, env = "IMAGE_MIRROR_MAX_BATCH", default_value_t = 100)]
    pub max_batch: u16,
    #[command(flatten)]
    pub list: ListFlag,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub metrics: MetricsFlag,
    #[command(flatten)]
    pub notify: NotifyFlags,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Jobs in progress at once.
    #[arg(long, env = "IMAGE_MIRROR_WORKERS", default_value_t = 4)]
    pub workers: u16,
    /// Write every job event as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Print which targets are missing or differ, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only entries whose line (`source target tag`) matches this regex.
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Mirror the new tags config.json discovers (instead of the images-list entries), and
    /// record them in images-list.
    #[arg(long)]
    pub discover: bool,
    /// Only targets whose tag is absent: each target repository's tags are read once, the
    /// source is not asked about tags that are present, and those are never overwritten.
    #[arg(long, env = "IMAGE_MIRROR_MISSING")]
    pub missing: bool,
    #[command(flatten)]
    pub drift: DriftArgs,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub sparse: SparseFlag,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Exit 1 when a target drifted (its tag holds another digest than the source's).
    #[arg(long, env = "IMAGE_MIRROR_FAIL_ON_DRIFT")]
    pub fail_on_drift: bool,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub progress: ProgressFlags,
    #[command(flatten)]
    pub plan: PlanFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub transfer: TransferFlags,
    #[command(flatten)]
    pub discovery: DiscoveryFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub metrics: MetricsFlag,
    #[command(flatten)]
    pub notify: NotifyFlags,
}

/// What travels with each image (nothing unless asked: no request is spent on it otherwise).
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Copy each image's OCI 1.1 referrers (signatures, attestations, SBOMs, and theirs),
    /// digest-exact: listed by the source's referrers API, else its fallback tag
    /// `sha256-<hex>`; a target without the API gets its fallback tag's index updated.
    #[arg(long, env = "IMAGE_MIRROR_REFERRERS")]
    pub referrers: bool,
    /// Only referrers of this artifact type (repeatable; every type by default).
    #[arg(long, value_name = "ARTIFACT_TYPE", requires = "referrers")]
    pub referrers_type: Vec<String>,
    /// Copy cosign's legacy tags of each image's digest: `sha256-<hex>.sig`, `.att`, `.sbom`.
    #[arg(long, env = "IMAGE_MIRROR_DIGEST_TAGS")]
    pub digest_tags: bool,
    /// Mirror only images whose source digest carries a cosign signature this public key
    /// verifies (repeatable: any of them; ECDSA P-256 PEM, as `cosign generate-key-pair`
    /// writes). Checked offline, with no transparency log. Others fail as `unsigned`.
    #[arg(long, value_name = "KEY_FILE")]
    pub require_signature: Vec<PathBuf>,
    /// Mirror only images whose source digest carries a keyless cosign signature: a
    /// certificate chaining to --trusted-root, valid when it signed, from this OIDC issuer,
    /// whose subject (an URI or email) the regex matches whole. Repeatable: any of them; with
    /// --require-signature, a trusted key is enough too. Others fail as `unsigned`, with why.
    #[arg(long, value_name = "ISSUER=SUBJECT_REGEX", requires = "trusted_root")]
    pub require_identity: Vec<String>,
    /// What keyless certificates must chain to: Sigstore's trusted_root.json (its authorities
    /// and transparency log keys; several, one per line, as `gh attestation trusted-root`
    /// prints them) or a PEM bundle of CA certificates. Read offline.
    #[arg(long, value_name = "FILE", requires = "require_identity")]
    pub trusted_root: Option<PathBuf>,
    /// Insecure: accept keyless signatures without a transparency log's promise although
    /// --trusted-root has a log key; their certificates are then judged at the current time.
    #[arg(long, requires = "require_identity")]
    pub insecure_ignore_tlog: bool,
    /// After each copy, push a signed statement of it (an in-toto attestation about the target
    /// digest: the source and its digest, the signer, the time, the tool) where `cosign
    /// verify-attestation` finds it. The key: cosign's (its password from COSIGN_PASSWORD) or
    /// a PKCS#8 PEM, ECDSA P-256.
    #[arg(long, env = "IMAGE_MIRROR_ATTEST", value_name = "KEY_FILE")]
    pub attest: Option<PathBuf>,
}

impl AttachArgs {
    /// The copy engine's options.
    pub fn options(&self) -> image_mirror_worker::AttachOptions {
        image_mirror_worker::AttachOptions {
            referrers: self.referrers,
            artifact_types: self.referrers_type.clone(),
            digest_tags: self.digest_tags,
        }
    }

    /// The keys of `--require-signature` (none: no signature required).
    /// The attester of `--attest`, its key opened; a key that does not open is bad input.
    pub fn attester(
        &self,
    ) -> Result<Option<image_mirror_worker::copy::Attester>, crate::exit::BadInput> {
        let Some(path) = &self.attest else {
            return Ok(None);
        };
        let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
        let key = image_mirror_trust::AttestKey::from_file(path, &password)
            .map_err(|e| crate::exit::BadInput(format!("--attest: {e}")))?;
        Ok(Some(image_mirror_worker::copy::Attester::new(key)))
    }

    /// Who signatures must come from: `--require-signature`'s keys and `--require-identity`'s
    /// identities under `--trusted-root` (none: no signature required).
    pub fn trust(&self) -> Result<image_mirror_worker::TrustPolicy, crate::exit::BadInput> {
        use crate::exit::BadInput;
        use image_mirror_worker::{IdentityPolicy, Keyless, TrustPolicy, TrustedRoot};
        let keys = image_mirror_worker::TrustedKeys::from_files(&self.require_signature)
            .map_err(|e| BadInput(format!("--require-signature: {e}")))?;
        let keyless = match &self.trusted_root {
            Some(root) if !self.require_identity.is_empty() => {
                let root = TrustedRoot::from_file(root)
                    .map_err(|e| BadInput(format!("--trusted-root: {e}")))?;
                let policies = self
                    .require_identity
                    .iter()
                    .map(|p| IdentityPolicy::parse(p))
                    .collect::<Result<_, _>>()
                    .map_err(|e| BadInput(format!("--require-identity: {e}")))?;
                Some(Keyless::new(root, policies, self.insecure_ignore_tlog))
            }
            _ => None,
        };
        Ok(TrustPolicy::new(keys, keyless))
    }
}

/// What a drifted target gets: a target tag that holds another digest than its source's.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// `keep`: leave the target as it is and report the entry as drifted (both digests);
    /// `overwrite`: copy the source over it.
    #[arg(long, env = "IMAGE_MIRROR_ON_DRIFT", value_enum, default_value_t = DriftChoice::Keep)]
    pub on_drift: DriftChoice,
    /// Before overwriting a drifted target, tag its old manifest with this template:
    /// `{tag}`, `{digest12}` (the old digest's first 12 hex digits), `{digest}`; say
    /// `{tag}-{digest12}`.
    #[arg(long, env = "IMAGE_MIRROR_BACKUP_TAG", value_name = "TEMPLATE")]
    pub backup_tag: Option<String>,
}

/// `--on-drift` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriftChoice {
    /// Keep the target; report the entry as drifted.
    Keep,
    /// Copy the source over the target.
    Overwrite,
}

#[derive(Debug, Subcommand)]
pub enum ProducerCommand {
    /// One job per images-list entry and target (targets overridden by --dest-registry and
    /// --dest-org), published with confirms.
    Sync(SyncArgs),
    /// One job (to be recorded) per new tag config.json discovers; one key's failure does not
    /// stop the others.
    Discover(DiscoverArgs),
    /// The same as `image-mirror add-tag` with --amqp-url.
    AddTag(ProducerAddTagArgs),
    /// The same as `image-mirror add-image` with --amqp-url.
    AddImage(ProducerAddImageArgs),
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Run again on this interval (`90s`, `15m`, `6h`, `1d`) until SIGTERM/SIGINT.
    #[arg(long, env = "IMAGE_MIRROR_DISCOVER_EVERY", value_name = "DURATION", value_parser = parse_duration)]
    pub every: Option<std::time::Duration>,
    /// Only these keys of config.json.
    #[arg(value_name = "KEY")]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub plan: PlanFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub discovery: DiscoveryFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub metrics: MetricsFlag,
    #[command(flatten)]
    pub notify: NotifyFlags,
}

/// A duration as every flag writes it (`90s`, `15m`, `6h`, `1d`, or plain seconds), more than
/// zero.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    image_mirror_common::duration::parse_positive(text)
}

/// A part size (`2GiB`, `700MB`), at least 1 MiB.
fn parse_split(text: &str) -> Result<u64, String> {
    let size = image_mirror_registry::upload_limits::parse_size(text)?;
    if size < 1024 * 1024 {
        return Err(format!("{text:?}: parts of less than 1 MiB"));
    }
    Ok(size)
}

/// A duration as every flag writes it, zero allowed.
pub fn parse_duration_or_zero(text: &str) -> Result<std::time::Duration, String> {
    image_mirror_common::duration::parse(text)
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only entries whose line (`source target tag`) matches this regex.
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Publish only the targets whose tag is absent (one tag list per target repository).
    #[arg(long, env = "IMAGE_MIRROR_MISSING")]
    pub missing: bool,
    /// Run again on this interval (`15m`, `1h`, `1d`) until SIGTERM/SIGINT.
    #[arg(long, env = "IMAGE_MIRROR_SYNC_EVERY", value_name = "DURATION", value_parser = parse_duration)]
    pub every: Option<std::time::Duration>,
    #[command(flatten)]
    pub plan: PlanFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub metrics: MetricsFlag,
    #[command(flatten)]
    pub notify: NotifyFlags,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source image, such as `quay.io/coreos/etcd:v3.5.21` or `traefik@sha256:…`
    /// (`docker://` in front is accepted, as skopeo writes it).
    pub source: String,
    /// Target image; without a tag it takes the source's (a copy by digest alone leaves the
    /// target untagged).
    pub target: String,
    /// A target tag that holds another digest: `overwrite` (a one-off copy is the decision)
    /// or `keep` (exit 1, naming both digests).
    #[arg(long, value_enum, default_value_t = DriftChoice::Overwrite)]
    pub on_drift: DriftChoice,
    /// Before overwriting, tag the target's old manifest with this template (`{tag}`,
    /// `{digest12}`, `{digest}`).
    #[arg(long, value_name = "TEMPLATE")]
    pub backup_tag: Option<String>,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub platforms: PlatformsFlag,
    #[command(flatten)]
    pub sparse: SparseFlag,
    #[command(flatten)]
    pub policy: PolicyFlags,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub progress: ProgressFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub transfer: TransferFlags,
}

#[derive(Debug, Args)]
pub struct SortArgs {
    /// Only check the order: exit 1 naming the first line out of order.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub list: ListFlag,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub files: FilesFlags,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The last N runs instead of the queues (default 10): what `run`, `import`, the
    /// producer's passes and the committer's batches came to, from the history in the cache
    /// folder; no broker needed.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10")]
    pub runs: Option<usize>,
    /// The cache folder holding the history (`runs.json`).
    #[arg(long, env = "IMAGE_MIRROR_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub broker: BrokerFlags,
}

/// `image-mirror plan`: the inputs of `run`, costed.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Only entries whose line (`source target tag`) matches this regex.
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Only targets whose tag is absent (one tag list per target repository).
    #[arg(long, env = "IMAGE_MIRROR_MISSING")]
    pub missing: bool,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub plan: PlanFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub transfer: TransferFlags,
}
