//! The Go peers as their users run them: `regctl image copy` for one copy, and `regsync once`
//! over a generated `regsync.yml` (one `type: image` entry per source and target, plain HTTP to
//! the loopback registries, `parallel` and `reqConcurrent` given image-mirror's concurrency).

use std::path::{Path, PathBuf};

use image_mirror_testkit::tools;

use crate::measure::{measure, Usage};

/// `regctl image copy FROM TO`, every host plain HTTP.
pub(crate) fn regctl_copy_args(from: &str, to: &str, hosts: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    for h in hosts {
        args.push("--host".into());
        args.push(format!("reg={h},tls=disabled"));
    }
    args.extend(["image".into(), "copy".into(), from.into(), to.into()]);
    args
}

/// The regctl program.
pub(crate) fn regctl() -> PathBuf {
    tools::path("regctl")
}

/// A `regsync.yml` in `dir` copying each `(source, target)` reference (with their tags),
/// `concurrency` images at once and `concurrency` requests per registry, plain HTTP.
pub(crate) fn regsync_config(
    pairs: &[(String, String)],
    hosts: &[String],
    concurrency: usize,
    dir: &Path,
) -> PathBuf {
    regsync_config_over(pairs, hosts, concurrency, dir, false)
}

/// [`regsync_config`], over TLS when `tls` (the CA from `SSL_CERT_FILE`).
pub(crate) fn regsync_config_over(
    pairs: &[(String, String)],
    hosts: &[String],
    concurrency: usize,
    dir: &Path,
    tls: bool,
) -> PathBuf {
    let tls = if tls { "" } else { "    tls: disabled\n" };
    let mut yaml = String::from("version: 1\ncreds:\n");
    for h in hosts {
        yaml.push_str(&format!(
            "  - registry: {h}\n{tls}    reqConcurrent: {concurrency}\n"
        ));
    }
    yaml.push_str(&format!("defaults:\n  parallel: {concurrency}\nsync:\n"));
    for (source, target) in pairs {
        yaml.push_str(&format!(
            "  - source: {source}\n    target: {target}\n    type: image\n"
        ));
    }
    let path = dir.join("regsync.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `regsync once -c CONFIG` (with `--missing` when asked).
pub(crate) fn regsync_once(config: &Path, missing: bool, cache: &Path) -> Usage {
    let mut args = vec![
        "once".to_owned(),
        "-c".to_owned(),
        config.display().to_string(),
    ];
    if missing {
        args.push("--missing".into());
    }
    measure(&tools::path("regsync"), &args, cache)
}
