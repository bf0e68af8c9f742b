//! `producer sync`: one job per images-list entry, for lines already listed (`record:
//! false`), with the target overrides of the command line applied: several target registries
//! are the targets of one job, so that the source is read once for all of them.

use std::collections::HashSet;

use image_mirror_common::reference::ReferenceError;
use image_mirror_common::{ImagesList, MirrorJob, Origin};
use regex::Regex;

use crate::jobs::TargetOverrides;

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
        let Some(job) = overrides.job_for(entry, false, Origin::Sync)? else {
            continue;
        };
        if seen.insert(job.id.clone()) {
            jobs.push(job);
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
            ..TargetOverrides::default()
        };
        let filter = Regex::new("flannel.*v0\\.26\\.7").unwrap();
        let jobs = plan_sync(&list, Some(&filter), &overrides).unwrap();
        assert_eq!(jobs.len(), 1, "one job for both targets");
        let targets: Vec<String> = jobs[0].targets().iter().map(ToString::to_string).collect();
        assert_eq!(
            targets,
            [
                "a.example:5000/acme/mirrored-flannel-flannel",
                "b.example/acme/mirrored-flannel-flannel"
            ]
        );
        let ids = jobs[0].event_ids();
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids[0], jobs[0].id);
    }
}
