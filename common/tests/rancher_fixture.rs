//! The real images-list and config.json of the project this one replaces must load, survive a
//! round trip untouched, and sort back to themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use image_mirror_common::{Config, ImagesList, VersionSource};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/rancher")
        .join(name)
}

#[test]
fn images_list_parses_and_round_trips() {
    let bytes = std::fs::read(fixture("images-list")).unwrap();
    let list = ImagesList::load(&fixture("images-list")).unwrap();
    assert_eq!(list.len(), 2172);
    assert_eq!(list.to_bytes(), bytes);
    assert_eq!(list.first_disorder(), None);
    let coredns: image_mirror_common::Repository = "coredns/coredns".parse().unwrap();
    let targets: Vec<String> = list
        .targets_of(&coredns)
        .iter()
        .map(|t| t.short())
        .collect();
    assert_eq!(
        targets,
        [
            "rancher/coredns-coredns",
            "rancher/mirrored-coredns-coredns"
        ]
    );
}

#[test]
fn shuffled_entries_sort_back_byte_identical() {
    let text = std::fs::read_to_string(fixture("images-list")).unwrap();
    let (header, entries): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('#'));
    let mut shuffled = entries.clone();
    shuffled.shuffle(&mut StdRng::seed_from_u64(7));
    assert_ne!(shuffled, entries);
    let mut input = header.join("\n");
    input.push('\n');
    input.push_str(&shuffled.join("\n"));
    input.push('\n');
    let mut list = ImagesList::parse(input.as_bytes()).unwrap();
    assert!(list.first_disorder().is_some());
    list.sort();
    assert_eq!(list.to_bytes(), text.as_bytes());
}

#[test]
fn config_loads_with_every_kind_typed() {
    let config = Config::load(&fixture("config.json")).unwrap();
    assert_eq!(config.rules().len(), 22);
    assert!(
        config.unsupported().is_empty(),
        "{:?}",
        config.unsupported()
    );
    let cilium = config.rule("cilium").unwrap();
    assert_eq!(
        cilium.source,
        VersionSource::HelmLatest("https://helm.cilium.io".into())
    );
    let chart = &cilium.helm_charts[0];
    assert_eq!(chart.name, "cilium");
    let environments: Vec<&str> = chart.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(environments, ["aws", "azure", "generic"]);
    assert_eq!(chart.environments[0].values, ["eni.enabled=true"]);
    assert_eq!(cilium.image_denylist.len(), 4);
    let traefik = config.rule("traefik").unwrap();
    assert_eq!(traefik.source, VersionSource::Registry);
    assert!(traefik.latest);
    let filter = traefik.filter.as_ref().unwrap();
    assert!(filter.is_match("2.11.2") && !filter.is_match("3.0.0"));
    let etcd = config.rule("etcd").unwrap();
    let req = etcd.constraint.as_ref().unwrap();
    assert!(req.matches(&"3.5.11".parse().unwrap()));
    assert!(!req.matches(&"3.5.10".parse().unwrap()));
    let longhorn = config.rule("longhorn").unwrap();
    assert!(matches!(
        &longhorn.source,
        VersionSource::GithubTaggedImagesFile(repo) if repo.to_string() == "longhorn/longhorn"
    ));
    assert_eq!(
        longhorn.images_file_path.as_deref(),
        Some("deploy/longhorn-images.txt")
    );
    assert_eq!(config.rule("cilium").unwrap().image_denylist.len(), 4);
}

#[test]
fn daily_list_parses() {
    let list = ImagesList::load(&fixture("images-list-daily")).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        list.to_bytes(),
        std::fs::read(fixture("images-list-daily")).unwrap()
    );
}
