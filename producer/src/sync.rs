//! `producer sync`: one job per images-list entry and target, for lines already listed
//! (`record: false`), with the target overrides of the command line applied.

use std::collections::HashSet;

use image_mirror_common::reference::ReferenceError;
use image_mirror_common::{ImagesList, MirrorJob, Origin, Repository};
use regex::Regex;

/// Where targets go instead of where images-list says.
#[derive(Debug, Clone, Default)]
pub struct TargetOverrides {
    /// Replace the target registry; several mirror every entry to each of them.
    pub registries: Vec<String>,
    /// Replace the target organisation (first path component).
    pub org: Option<String>,
}

impl TargetOverrides {
    /// The targets `target` stands for under these overrides.
    pub fn apply(&self, target: &Repository) -> Result<Vec<Repository>, ReferenceError> {
        let base = match &self.org {
            Some(org) => target.with_org(org)?,
            None => target.clone(),
        };
        if self.registries.is_empty() {
            return Ok(vec![base]);
        }
        self.registries
            .iter()
            .map(|r| base.with_registry(r))
            .collect()
    }
}

/// The jobs that mirror every entry of `list` whose line matches `filter` (a regex searched
/// in `source target tag`), to each overridden target. Ids are deterministic and each job
/// appears once.
pub fn plan_sync(
    list: &ImagesList,
    filter: Option<&Regex>,
    overrides: &TargetOverrides,
) -> Result<Vec<MirrorJob>, ReferenceError> {
    let mut seen = HashSet::new();
    let mut jobs = Vec::new();
    for entry in list.entries() {
        if filter.is_some_and(|f| !f.is_match(&entry.line())) {
            continue;
        }
        for target in overrides.apply(&entry.target)? {
            let job = MirrorJob::new(
                entry.source.clone(),
                target,
                entry.tag.clone(),
                false,
                Origin::Sync,
            )
            .listed_as(&entry.target);
            if seen.insert(job.id.clone()) {
                jobs.push(job);
            }
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &[u8] = b"# h\nflannel/flannel rancher/mirrored-flannel-flannel v0.26.6\nflannel/flannel rancher/mirrored-flannel-flannel v0.26.7\nquay.io/coreos/etcd rancher/mirrored-coreos-etcd v3.5.21\n";

    #[test]
    fn one_job_per_entry_and_target() {
        let list = ImagesList::parse(LIST).unwrap();
        let jobs = plan_sync(&list, None, &TargetOverrides::default()).unwrap();
        assert_eq!(jobs.len(), 3);
        assert!(jobs.iter().all(|j| !j.record && j.origin == Origin::Sync));
        assert_eq!(jobs[2].source.to_string(), "quay.io/coreos/etcd");
        assert_eq!(
            jobs[2].target.to_string(),
            "docker.io/rancher/mirrored-coreos-etcd"
        );
        // Deterministic.
        let again = plan_sync(&list, None, &TargetOverrides::default()).unwrap();
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let ids_again: Vec<&str> = again.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ids_again);
    }

    #[test]
    fn filter_and_overrides() {
        let list = ImagesList::parse(LIST).unwrap();
        let overrides = TargetOverrides {
            registries: vec!["a.example:5000".into(), "b.example".into()],
            org: Some("acme".into()),
        };
        let filter = Regex::new("flannel.*v0\\.26\\.7").unwrap();
        let jobs = plan_sync(&list, Some(&filter), &overrides).unwrap();
        let targets: Vec<String> = jobs.iter().map(|j| j.target.to_string()).collect();
        assert_eq!(
            targets,
            [
                "a.example:5000/acme/mirrored-flannel-flannel",
                "b.example/acme/mirrored-flannel-flannel"
            ]
        );
        assert_ne!(jobs[0].id, jobs[1].id);
    }
}
