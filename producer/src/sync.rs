//! `producer sync`: the jobs of the images-list entries, for lines already listed (`record:
//! false`), with the target overrides of the command line applied. Every target of one source
//! tag is a target of one job, so that the source is read once for all of them: the targets of
//! several `--dest-registry` values, and the lines that mirror the same source tag to several
//! places (132 source tags of the real list are on more than one line).

use std::collections::{HashMap, HashSet};

use image_mirror_common::reference::ReferenceError;
use image_mirror_common::{ImagesList, MirrorJob, Requester};
use regex::Regex;

use crate::jobs::TargetOverrides;

/// The jobs that mirror every entry of `list` whose line matches `filter` (a regex searched
/// in `source target tag`), to each overridden target: one job per source tag (and what it
/// takes along), in the order of the lines, with every target of it once. Ids are
/// deterministic.
pub fn plan_sync(
    list: &ImagesList,
    filter: Option<&Regex>,
    overrides: &TargetOverrides,
) -> Result<Vec<MirrorJob>, ReferenceError> {
    let mut job_of: HashMap<String, usize> = HashMap::new();
    let mut targets_seen = HashSet::new();
    let mut jobs: Vec<MirrorJob> = Vec::new();
    let revision = list.revision().to_string();
    for entry in list.entries() {
        if filter.is_some_and(|f| !f.is_match(&entry.line())) {
            continue;
        }
        let Some(mut job) = overrides.job_for(entry, false, Requester::Sync)? else {
            continue;
        };
        job.list_revision = Some(revision.clone());
        let fresh: Vec<_> = job
            .targets()
            .into_iter()
            .filter(|t| targets_seen.insert(format!("{} {t} {}", job.source, job.tag)))
            .collect();
        let key = format!(
            "{} {} {} {}",
            job.source, job.tag, job.referrers, job.digest_tags
        );
        match job_of.get(&key) {
            Some(&i) => jobs[i].also_to.extend(fresh),
            None => {
                if let Some(job) = job.with_targets(&fresh) {
                    job_of.insert(key, jobs.len());
                    jobs.push(job);
                }
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
        assert!(jobs
            .iter()
            .all(|j| !j.record && j.origin == Requester::Sync));
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
    fn lines_of_one_source_tag_are_one_job_with_every_target() {
        let list = ImagesList::parse(
            b"a.example/app b.example/one/app v1\na.example/app b.example/two/app v1\na.example/app b.example/one/app v2\n",
        )
        .unwrap();
        let jobs = plan_sync(&list, None, &TargetOverrides::default()).unwrap();
        assert_eq!(jobs.len(), 2, "{jobs:#?}");
        let targets: Vec<String> = jobs[0].targets().iter().map(ToString::to_string).collect();
        assert_eq!(targets, ["b.example/one/app", "b.example/two/app"]);
        assert_eq!(jobs[0].tag.to_string(), "v1");
        assert_eq!(jobs[1].targets().len(), 1);
        // Each target's event keeps the id of its own line.
        let lone = plan_sync(
            &ImagesList::parse(b"a.example/app b.example/two/app v1\n").unwrap(),
            None,
            &TargetOverrides::default(),
        )
        .unwrap();
        assert_eq!(jobs[0].event_ids()[1], lone[0].id);
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
