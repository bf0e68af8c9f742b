//! GitHub mode: a batch of lines becomes one pull request that adds them to images-list.
//!
//! The branch is named from a hash of the sorted lines, so the same lines always make the same
//! branch: when an open pull request from it exists, nothing new is made. Otherwise the branch
//! is (re)built from the current base, the file read there gets the lines in `sort -V` order and
//! is committed through the contents API (read again and rebuilt if it changed meanwhile), and
//! the pull request is opened and labelled.

use image_mirror_common::config::GithubRepo;
use image_mirror_common::github::{GithubClient, GithubError, NewPullRequest};
use image_mirror_common::{Digest, Entry, ImagesList};
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
}

/// What proposing a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposal {
    /// The base already has every line.
    NothingNew,
    /// An open pull request for the same lines exists.
    Existing {
        /// Its number.
        number: u64,
        /// The branch.
        branch: String,
    },
    /// A pull request was opened.
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

/// Attempts at committing when the file keeps changing under us.
const COMMIT_ATTEMPTS: usize = 5;

/// Proposes `lines` as a pull request (see the module documentation).
pub async fn propose(
    github: &GithubClient,
    settings: &PullRequestSettings,
    lines: &[Recorded],
) -> Result<Proposal, GithubError> {
    let repo = &settings.repo;
    let base_file = github
        .file_with_sha(repo, &settings.path, &settings.base_branch)
        .await?;
    let base_list = parse(&base_file.text, settings)?;
    let mut new: Vec<&Recorded> = lines
        .iter()
        .filter(|r| !base_list.contains(&r.entry))
        .collect();
    new.sort_by_key(|r| r.entry.line());
    new.dedup_by(|a, b| a.entry == b.entry);
    if new.is_empty() {
        return Ok(Proposal::NothingNew);
    }
    let branch = branch_name(&new);
    if let Some(pr) = github.open_pull_for(repo, &branch).await? {
        // Labelling may be what an earlier attempt did not finish.
        if let Some(label) = &settings.label {
            github.add_labels(repo, pr.number, &[label]).await?;
        }
        return Ok(Proposal::Existing {
            number: pr.number,
            branch,
        });
    }
    let base_head = github
        .branch_head(repo, &settings.base_branch)
        .await?
        .ok_or_else(|| GithubError {
            operation: format!("read branch {} of {repo}", settings.base_branch),
            status: Some(404),
            message: "the base branch does not exist".into(),
            transient: false,
            retry_after: None,
        })?;
    // Left over from an attempt that did not open its pull request: rebuilt on the base.
    if github.branch_head(repo, &branch).await?.is_some() {
        github.reset_branch(repo, &branch, &base_head).await?;
    } else {
        github.create_branch(repo, &branch, &base_head).await?;
    }
    let (title, body) = (title(&new), body(&new));
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The file as the branch has it: the base as it is now, whatever it was above.
        let file = github.file_with_sha(repo, &settings.path, &branch).await?;
        let mut list = parse(&file.text, settings)?;
        let added = new.iter().filter(|r| list.insert(r.entry.clone())).count();
        if added == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&list.to_bytes()).into_owned();
        match github
            .put_file(repo, &settings.path, &branch, &title, &text, &file.sha)
            .await
        {
            Ok(()) => break,
            Err(e) if matches!(e.status, Some(409 | 422)) && attempt < COMMIT_ATTEMPTS => {
                tracing::info!(error = %e, "images-list changed on the branch; rebuilding");
            }
            Err(e) => return Err(e),
        }
    }
    let pull = NewPullRequest {
        title: &title,
        head: &branch,
        base: &settings.base_branch,
        body: &body,
    };
    let pr = match github.create_pull(repo, &pull).await {
        Ok(pr) => pr,
        // Opened by an earlier attempt whose answer was lost.
        Err(e) if e.status == Some(422) => match github.open_pull_for(repo, &branch).await? {
            Some(pr) => {
                return Ok(Proposal::Existing {
                    number: pr.number,
                    branch,
                })
            }
            None => return Err(e),
        },
        Err(e) => return Err(e),
    };
    if let Some(label) = &settings.label {
        github.add_labels(repo, pr.number, &[label]).await?;
    }
    Ok(Proposal::Opened {
        number: pr.number,
        url: pr.html_url,
        branch,
        lines: new.len(),
    })
}

fn parse(text: &str, settings: &PullRequestSettings) -> Result<ImagesList, GithubError> {
    ImagesList::parse(text.as_bytes()).map_err(|problems| {
        let first = problems
            .first()
            .map(|(line, p)| format!("line {line}: {p}"))
            .unwrap_or_default();
        GithubError {
            operation: format!(
                "read {} of {} at {}",
                settings.path, settings.repo, settings.base_branch
            ),
            status: None,
            message: format!("not a valid images-list: {first}"),
            transient: false,
            retry_after: None,
        }
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
    format!("image-mirror/add-{hex}")
}

/// "Added tag(s) T for image(s) I", as the original tool titled its pull requests, cut to 256
/// characters.
pub fn title(lines: &[&Recorded]) -> String {
    let mut tags: Vec<&str> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    for r in lines {
        if !tags.contains(&r.entry.tag.as_str()) {
            tags.push(r.entry.tag.as_str());
        }
        let image = r.entry.source.short();
        if !images.contains(&image) {
            images.push(image);
        }
    }
    let full = format!(
        "Added tag(s) {} for image(s) {}",
        tags.join(", "),
        images.join(", ")
    );
    if full.chars().count() <= 256 {
        return full;
    }
    let cut: String = full.chars().take(253).collect();
    format!("{cut}...")
}

/// One line per image: `source:tag -> target@digest`.
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
        }
    }

    #[test]
    fn branch_title_and_body() {
        let a = recorded("flannel/flannel rancher/mirrored-flannel-flannel v0.26.7");
        let b = recorded("quay.io/coreos/etcd rancher/mirrored-coreos-etcd v3.5.22");
        assert_eq!(branch_name(&[&a, &b]), branch_name(&[&b, &a]));
        assert_ne!(branch_name(&[&a]), branch_name(&[&a, &b]));
        assert!(branch_name(&[&a]).starts_with("image-mirror/add-"));
        assert_eq!(
            title(&[&a, &b]),
            "Added tag(s) v0.26.7, v3.5.22 for image(s) flannel/flannel, quay.io/coreos/etcd"
        );
        assert!(body(&[&a]).contains(&format!(
            "- `flannel/flannel:v0.26.7 -> rancher/mirrored-flannel-flannel@{}`",
            a.digest
        )));
        let many: Vec<Recorded> = (0..40)
            .map(|i| recorded(&format!("team/app{i} mirror/app{i} v1.{i}.0")))
            .collect();
        let refs: Vec<&Recorded> = many.iter().collect();
        let t = title(&refs);
        assert_eq!(t.chars().count(), 256);
        assert!(t.ends_with("..."));
    }
}
