//! Building the registry client and copy engine from the registry and transfer flags.

use anyhow::Result;
use image_mirror_registry::dockerhub::DockerHub;
use image_mirror_registry::upload_limits::settings_of;
use image_mirror_registry::{
    ClientOptions, DockerConfig, RateLimitPolicy, RegistryClient, StallRule,
};
use image_mirror_worker::copy::{BackupTag, DriftPolicy, OnDrift};
use image_mirror_worker::copy::{MountIndex, TargetRecord};
use image_mirror_worker::{CopyEngine, CopyOptions, SavedUploads};

use crate::args::{DriftChoice, HubFlag, RegistryFlags, TransferFlags};
use crate::exit::BadInput;

/// The registry client the flags describe: credentials from the Docker config, plain HTTP
/// only for `--insecure-registry` hosts; blob transfers as `transfer` says (a command that
/// moves no blob has none, and the defaults).
pub fn client(
    registry: &RegistryFlags,
    transfer: Option<&TransferFlags>,
) -> Result<RegistryClient> {
    let docker_config = DockerConfig::load_default().map_err(|e| BadInput(e.to_string()))?;
    let options = ClientOptions {
        insecure_hosts: registry.insecure_registries.clone(),
        docker_config,
        request_timeout: registry.request_timeout,
        connect_timeout: registry.connect_timeout,
        stall: transfer.map_or_else(StallRule::default, |t| StallRule {
            window: t.stall_timeout,
            ..StallRule::default()
        }),
        rate_limits: RateLimitPolicy {
            reserve: registry.rate_limit_reserve,
            max_wait: registry.rate_limit_max_wait,
        },
        upload_settings: transfer.map_or_else(Default::default, |t| {
            settings_of(&t.blob_chunk, &t.blob_max)
        }),
        bandwidth: transfer.map_or_else(Vec::new, |t| t.max_bandwidth.clone()),
        ..ClientOptions::default()
    };
    Ok(RegistryClient::new(options)?)
}

/// Docker Hub's web API through `client`'s transport, with its Docker Hub credentials.
pub fn hub(flag: &HubFlag, client: &RegistryClient) -> Result<DockerHub> {
    Ok(DockerHub::new(&flag.docker_hub_api, client)
        .map_err(|e| BadInput(format!("--docker-hub-api: {e}")))?)
}

/// The drift policy of `--on-drift` and `--backup-tag`; a bad template is bad input.
pub fn drift_policy(on_drift: DriftChoice, backup_tag: Option<&str>) -> Result<DriftPolicy> {
    let backup_tag = backup_tag
        .map(|t| t.parse::<BackupTag>())
        .transpose()
        .map_err(|e| BadInput(format!("--backup-tag: {e}")))?;
    if backup_tag.is_some() && on_drift == DriftChoice::Keep {
        return Err(BadInput("--backup-tag applies only with --on-drift overwrite".into()).into());
    }
    Ok(DriftPolicy {
        on_drift: match on_drift {
            DriftChoice::Keep => OnDrift::Keep,
            DriftChoice::Overwrite => OnDrift::Overwrite,
        },
        backup_tag,
    })
}

/// A copy engine over [`client`], remembering in the cache folder where blobs are (for
/// mounts), where its chunked uploads stand (to go on from there after a stop) and what
/// target tags were seen to hold (asked again once older than `--target-record-max-age`).
pub fn engine(registry: &RegistryFlags, transfer: &TransferFlags) -> Result<CopyEngine> {
    let dir = transfer.cache_dir.clone().or_else(MountIndex::default_dir);
    let mounts = dir.as_ref().map_or_else(MountIndex::in_memory, |d| {
        MountIndex::persistent(&d.join("blob-locations"))
    });
    let saved = dir
        .as_ref()
        .map_or_else(SavedUploads::nowhere, |d| SavedUploads::in_dir(d));
    let record = dir.as_ref().map_or_else(TargetRecord::off, |d| {
        TargetRecord::persistent(&d.join("target-tags"), transfer.target_record_max_age)
    });
    Ok(CopyEngine::with_mounts(
        client(registry, Some(transfer))?,
        CopyOptions::default(),
        mounts,
    )
    .with_saved_uploads(saved)
    .with_target_record(record))
}
