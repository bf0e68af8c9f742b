//! The settings of a registry client, as the binary's flags give them.

use std::collections::HashMap;
use std::time::Duration;

use crate::body::StallRule;
use crate::credentials::DockerConfig;
use crate::ratelimit::RateLimitPolicy;
use crate::retry::RetryPolicy;
use crate::upload_limits::UploadSettings;

/// Settings of a [`RegistryClient`](crate::RegistryClient).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (with port when not default) that may be reached over plain HTTP.
    pub insecure_hosts: Vec<String>,
    /// Concurrent requests per registry host.
    pub max_requests_per_host: usize,
    /// Retry policy for transient errors.
    pub retry: RetryPolicy,
    /// Where credentials come from.
    pub docker_config: DockerConfig,
    /// Timeout to establish a connection.
    pub connect_timeout: Duration,
    /// Deadline of every request that carries no blob body (manifests, tokens, tag pages,
    /// upload sessions, mounts), from sending it to the end of its answer.
    pub request_timeout: Duration,
    /// How fast a blob body must move, up or down.
    pub stall: StallRule,
    /// How long a host that could not be reached stays known as unreachable.
    pub unreachable_cooldown: Duration,
    /// How registry quotas are spent.
    pub rate_limits: RateLimitPolicy,
    /// Upload request sizes set per registry host (`--blob-chunk`, `--blob-max`).
    pub upload_settings: HashMap<String, UploadSettings>,
    /// Bandwidth caps (`--max-bandwidth`): every transfer's, and per registry host.
    pub bandwidth: Vec<image_mirror_common::rate::HostRate>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure_hosts: Vec::new(),
            max_requests_per_host: 16,
            retry: crate::retry::REQUESTS,
            docker_config: DockerConfig::default(),
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            stall: StallRule::default(),
            unreachable_cooldown: Duration::from_secs(30),
            rate_limits: RateLimitPolicy::default(),
            upload_settings: HashMap::new(),
            bandwidth: Vec::new(),
        }
    }
}
