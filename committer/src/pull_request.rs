//! GitHub mode: a batch of lines becomes one pull request that adds them to images-list.
//!
//! A line is proposed once: the committer's open pull requests (branches `image-mirror/add-…`)
//! are read first, and a line one of them already adds is left out; a batch whose new lines
//! are all proposed makes nothing, and one with some lines not proposed yet opens a pull
//! request for those alone. (An open pull request is never changed: what a reviewer has read
//! stays what it proposes.) The branch is named from a hash of the sorted lines, (re)built from
//! the current base; the file read there gets the lines in `sort -V` order and is committed
//! through the contents API (read again and rebuilt if it changed meanwhile), and the pull
//! request is opened and labelled.

use image_mirror_common::config::GithubRepo;
use image_mirror_common::{Digest, Entry, ImagesList};
use image_mirror_github::{FileWrite, GithubClient, GithubError, NewPullRequest, PullCreated};
use sha2::{Digest as _, Sha256};

/// Where pull requests go.
#[derive(Debug, Clone)]
pub struct PullRequestSettings {
    /// The repository holding images-list.
    pub repo: GithubRepo,
    /// The branch pull requests go into.
    pub base_branch: String,
    /// The path of images-list in the repository.
    pub path: String,
    /// A label for each pull request, if any.
    pub label: Option<String>,
}

/// A line to record and the digest its target was seen to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The images-list line.
    pub entry: Entry,
    /// The digest the target holds.
    pub digest: Digest,
    /// The source's digest and platforms, when the target holds an index rewritten for the
    /// chosen platforms instead of the source's.
    pub rewritten_from: Option<RewrittenFrom>,
}

/// What a rewritten index was cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenFrom {
    /// The source's index digest.
    pub source_digest: Digest,
    /// The platforms the target's index lists.
    pub platforms: Vec<String>,
}

/// What proposing a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposal {
    /// The base already has every line.
    NothingNew,
    /// Open pull requests of the committer's already propose every line that is new.
    AlreadyProposed {
        /// Their numbers.
        numbers: Vec<u64>,
    },
    /// A pull request was opened for the lines no open one proposes.
    Opened {
        /// Its number.
        number: u64,
        /// Its page.
        url: Option<String>,
        /// The branch.
        branch: String,
        /// How many lines it adds.
        lines: usize,
    },
}

/// The prefix of every branch the committer makes.
pub const BRANCH_PREFIX: &str = "image-mirror/add-";

/// Attempts at committing when the file keeps changing under us.
const COMMIT_ATTEMPTS: usize = 5;

/// Proposes `lines` as a pull request (see the module documentation).
pub async fn propose(
    github: &GithubClient,
    settings: &PullRequestSettings,
    lines: &[Recorded],
) -> Result<Proposal, GithubError> {
    let base_file = github
        .file_with_sha(&settings.repo, &settings.path, &settings.base_branch)
        .await?;
    let base_list = parse(&base_file.text, settings, &settings.base_branch)?;
    let mut new: Vec<&Recorded> = lines
        .iter()
        .filter(|r| !base_list.contains(&r.entry))
        .collect();
    new.sort_by_key(|r| r.entry.line());
    new.dedup_by(|a, b| a.entry == b.entry);
    if new.is_empty() {
        return Ok(Proposal::NothingNew);
    }
    let proposing = proposed_elsewhere(github, settings, &base_list, &new).await?;
    new.retain(|r| !proposing.iter().any(|p| p.entries.contains(&r.entry)));
    if new.is_empty() {
        let mut numbers: Vec<u64> = proposing.iter().map(|p| p.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        // Labelling may be what an earlier attempt did not finish.
        if let Some(label) = &settings.label {
            for n in &numbers {
                github.add_labels(&settings.repo, *n, &[label]).await?;
            }
        }
        return Ok(Proposal::AlreadyProposed { numbers });
    }
    let branch = branch_name(&new);
    let title = title(&new, &base_list);
    commit_on_branch(github, settings, &branch, &new, &title).await?;
    open_pull(github, settings, &branch, &new, &title).await
}

/// An open pull request of the committer's and the lines it adds to the base.
struct Proposing {
    number: u64,
    entries: Vec<Entry>,
}

/// The committer's open pull requests that propose any of `new`, with what they add.
async fn proposed_elsewhere(
    github: &GithubClient,
    settings: &PullRequestSettings,
    base: &ImagesList,
    new: &[&Recorded],
) -> Result<Vec<Proposing>, GithubError> {
    let mut found = Vec::new();
    for pull in github
        .open_pulls_from(&settings.repo, BRANCH_PREFIX)
        .await?
    {
        let file = github
            .file_with_sha(&settings.repo, &settings.path, &pull.branch)
            .await?;
        let proposed = parse(&file.text, settings, &pull.branch)?;
        let entries: Vec<Entry> = new
            .iter()
            .filter(|r| proposed.contains(&r.entry) && !base.contains(&r.entry))
            .map(|r| r.entry.clone())
            .collect();
        if !entries.is_empty() {
            found.push(Proposing {
                number: pull.number,
                entries,
            });
        }
    }
    Ok(found)
}

/// (Re)builds `branch` from the base as it is now, with the lines added in `sort -V` order,
/// read again and rebuilt when the file changed under us.
async fn commit_on_branch(
    github: &GithubClient,
    settings: &PullRequestSettings,
    branch: &str,
    new: &[&Recorded],
    title: &str,
) -> Result<(), GithubError> {
    let repo = &settings.repo;
    let base_head = github
        .branch_head(repo, &settings.base_branch)
        .await?
        .ok_or_else(|| {
            GithubError::unusable(
                &format!("read branch {} of {repo}", settings.base_branch),
                "the base branch does not exist",
            )
        })?;
    // Left over from an attempt that did not open its pull request: rebuilt on the base.
    if github.branch_head(repo, branch).await?.is_some() {
        github.reset_branch(repo, branch, &base_head).await?;
    } else {
        github.create_branch(repo, branch, &base_head).await?;
    }
    for attempt in 1..=COMMIT_ATTEMPTS {
        // The file as the branch has it: the base as it is now, whatever it was before.
        let file = github.file_with_sha(repo, &settings.path, branch).await?;
        let mut list = parse(&file.text, settings, branch)?;
        let added = new.iter().filter(|r| list.insert(r.entry.clone())).count();
        if added == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&list.to_bytes()).into_owned();
        match github
            .put_file(repo, &settings.path, branch, title, &text, &file.sha)
            .await?
        {
            FileWrite::Written => return Ok(()),
            FileWrite::Changed if attempt < COMMIT_ATTEMPTS => {
                tracing::info!("images-list changed on the branch; rebuilding");
            }
            FileWrite::Changed => break,
        }
    }
    Err(GithubError::unusable(
        &format!("commit {} on {branch} of {repo}", settings.path),
        format!("the file kept changing under us ({COMMIT_ATTEMPTS} attempts)"),
    ))
}

/// Opens the pull request from `branch` (or finds the one an earlier attempt opened) and
/// labels it.
async fn open_pull(
    github: &GithubClient,
    settings: &PullRequestSettings,
    branch: &str,
    new: &[&Recorded],
    title: &str,
) -> Result<Proposal, GithubError> {
    let repo = &settings.repo;
    let body = body(new);
    let pull = NewPullRequest {
        title,
        head: branch,
        base: &settings.base_branch,
        body: &body,
    };
    let (number, url) = match github.create_pull(repo, &pull).await? {
        PullCreated::Opened(pr) => (pr.number, pr.html_url),
        // Opened by an earlier attempt whose answer was lost.
        PullCreated::AlreadyOpen => match github.open_pull_for(repo, branch).await? {
            Some(pr) => (pr.number, pr.html_url),
            None => {
                return Err(GithubError::unusable(
                    &format!("open a pull request from {branch} of {repo}"),
                    "GitHub says one is open, and none is",
                ))
            }
        },
    };
    if let Some(label) = &settings.label {
        github.add_labels(repo, number, &[label]).await?;
    }
    Ok(Proposal::Opened {
        number,
        url,
        branch: branch.to_owned(),
        lines: new.len(),
    })
}

fn parse(text: &str, settings: &PullRequestSettings, at: &str) -> Result<ImagesList, GithubError> {
    let name = format!("{} of {} at {at}", settings.path, settings.repo);
    ImagesList::parse_named(text.as_bytes(), &name).map_err(|problem| {
        GithubError::unusable(
            &format!("read {name}"),
            format!("not a valid images-list: {problem}"),
        )
    })
}

/// `image-mirror/add-<12 hex>` from the sorted lines.
pub fn branch_name(lines: &[&Recorded]) -> String {
    let mut sorted: Vec<String> = lines.iter().map(|r| r.entry.line()).collect();
    sorted.sort();
    let mut h = Sha256::new();
    for line in &sorted {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    let hex: String = h
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{BRANCH_PREFIX}{hex}")
}

/// The title the original workflows gave: "Added image(s) S:T, …" for images new to the base
/// list (their target repository is not in it), "Added tag(s) T for image(s) I" for new tags
/// of listed images; both, joined, for a batch of both; cut to 256 characters.
pub fn title(lines: &[&Recorded], base: &ImagesList) -> String {
    let known: std::collections::HashSet<&image_mirror_common::Repository> =
        base.entries().map(|e| &e.target).collect();
    let (images, tags): (Vec<&&Recorded>, Vec<&&Recorded>) =
        lines.iter().partition(|r| !known.contains(&r.entry.target));
    let mut parts = Vec::new();
    if !images.is_empty() {
        let named: Vec<String> = images
            .iter()
            .map(|r| format!("{}:{}", r.entry.source.short(), r.entry.tag))
            .collect();
        parts.push(format!("Added image(s) {}", named.join(", ")));
    }
    if !tags.is_empty() {
        let (mut tag_names, mut image_names): (Vec<&str>, Vec<String>) = (Vec::new(), Vec::new());
        for r in &tags {
            if !tag_names.contains(&r.entry.tag.as_str()) {
                tag_names.push(r.entry.tag.as_str());
            }
            let image = r.entry.source.short();
            if !image_names.contains(&image) {
                image_names.push(image);
            }
        }
        let verb = if parts.is_empty() { "Added" } else { "added" };
        parts.push(format!(
            "{verb} tag(s) {} for image(s) {}",
            tag_names.join(", "),
            image_names.join(", ")
        ));
    }
    let full = parts.join("; ");
    if full.chars().count() <= 256 {
        return full;
    }
    let cut: String = full.chars().take(253).collect();
    format!("{cut}...")
}

/// One line per image: `source:tag -> target@digest` (and for an index rewritten for its
/// platforms, the source's digest too).
pub fn body(lines: &[&Recorded]) -> String {
    let mut body =
        String::from("Mirrored and verified (the target tag holds the source digest):\n\n");
    for r in lines {
        body.push_str(&format!(
            "- `{}:{} -> {}@{}`\n",
            r.entry.source.short(),
            r.entry.tag,
            r.entry.target.short(),
            r.digest
        ));
        if let Some(from) = &r.rewritten_from {
            body.push_str(&format!(
                "  - platforms {} only: the target refused the source index `{}` with only them present and holds an index of them alone\n",
                from.platforms.join(", "),
                from.source_digest
            ));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(line: &str) -> Recorded {
        let list = ImagesList::parse(format!("{line}\n").as_bytes()).unwrap();
        let entry = list.entries().next().unwrap().clone();
        Recorded {
            entry,
            digest: Digest::from_sha256_bytes(&[7; 32]),
            rewritten_from: None,
        }
    }

    #[test]
    fn branch_title_and_body() {
        let a = recorded("flannel/flannel rancher/mirrored-flannel-flannel v0.26.7");
        let b = recorded("quay.io/coreos/etcd rancher/mirrored-coreos-etcd v3.5.22");
        assert_eq!(branch_name(&[&a, &b]), branch_name(&[&b, &a]));
        assert_ne!(branch_name(&[&a]), branch_name(&[&a, &b]));
        assert!(branch_name(&[&a]).starts_with("image-mirror/add-"));
        let base = ImagesList::parse(
            b"flannel/flannel rancher/mirrored-flannel-flannel v0.26.6\nquay.io/coreos/etcd rancher/mirrored-coreos-etcd v3.5.21\n",
        )
        .unwrap();
        assert_eq!(
            title(&[&a, &b], &base),
            "Added tag(s) v0.26.7, v3.5.22 for image(s) flannel/flannel, quay.io/coreos/etcd"
        );
        let new_image = recorded("ghcr.io/x/y rancher/mirrored-x-y 1.0");
        assert_eq!(
            title(&[&new_image, &a], &base),
            "Added image(s) ghcr.io/x/y:1.0; added tag(s) v0.26.7 for image(s) flannel/flannel"
        );
        assert!(body(&[&a]).contains(&format!(
            "- `flannel/flannel:v0.26.7 -> rancher/mirrored-flannel-flannel@{}`",
            a.digest
        )));
        let mut rewritten = recorded("docker.io/library/nginx mirror/nginx 1.27");
        rewritten.rewritten_from = Some(RewrittenFrom {
            source_digest: Digest::from_sha256_bytes(&[9; 32]),
            platforms: vec!["linux/amd64".into()],
        });
        let text = body(&[&rewritten]);
        assert!(text.contains(&rewritten.digest.to_string()), "{text}");
        assert!(
            text.contains(&format!(
                "platforms linux/amd64 only: the target refused the source index `{}`",
                Digest::from_sha256_bytes(&[9; 32])
            )),
            "{text}"
        );
        let many: Vec<Recorded> = (0..40)
            .map(|i| recorded(&format!("team/app{i} mirror/app{i} v1.{i}.0")))
            .collect();
        let refs: Vec<&Recorded> = many.iter().collect();
        let t = title(&refs, &ImagesList::default());
        assert_eq!(t.chars().count(), 256);
        assert!(t.ends_with("..."));
    }
}
