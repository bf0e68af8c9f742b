//! What a settled batch tells people: the batch as a run (its jobs by outcome, the lines it
//! recorded, the pull request; kept in the run history and sent by `--notify`), and the pull
//! request it opened.

use chrono::{DateTime, Utc};
use image_mirror_notify::{JobProblem, PullRequestNotice, RunFinished, RunStatus};

use crate::pull_request::Proposal;
use crate::runner::{BatchOutcome, BatchResult};

impl BatchOutcome {
    /// The batch as a run of the committer that began at `started`.
    pub fn as_run(&self, started: DateTime<Utc>) -> RunFinished {
        let mut run = RunFinished::of_events("committer", started, &self.read);
        run.new_images = match &self.result {
            BatchResult::Written(added) => added.iter().map(|e| e.line()).collect(),
            _ => self.lines(),
        };
        if let BatchResult::Proposed(Proposal::Opened { url, .. }) = &self.result {
            run.pull_request.clone_from(url);
        }
        for why in &self.rejected {
            run.failures.push(JobProblem {
                job: "a line".into(),
                class: "not_recorded".into(),
                message: why.clone(),
            });
            run.status = RunStatus::Failed;
        }
        run
    }

    /// The pull request the batch opened, when it opened one.
    pub fn pull_request(&self) -> Option<PullRequestNotice> {
        match &self.result {
            BatchResult::Proposed(Proposal::Opened { number, url, .. }) => {
                Some(PullRequestNotice {
                    url: url.clone().unwrap_or_default(),
                    number: *number,
                    updated: false,
                    lines: self.lines(),
                })
            }
            _ => None,
        }
    }

    /// The lines the batch's events stand for, when they are to be recorded.
    fn lines(&self) -> Vec<String> {
        self.read
            .iter()
            .filter(|e| e.is_to_record())
            .map(|e| e.entry().line())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{BatchOutcome, BatchResult};

    #[test]
    fn a_batch_that_opened_a_pull_request_tells_of_it_and_runs_with_its_link() {
        let outcome = BatchOutcome {
            events: 0,
            read: Vec::new(),
            rejected: vec!["a forged line".into()],
            result: BatchResult::Proposed(Proposal::Opened {
                number: 7,
                url: Some("https://github.example/o/r/pull/7".into()),
                branch: "image-mirror/add-x".into(),
                lines: 0,
            }),
        };
        let pr = outcome.pull_request().unwrap();
        assert_eq!((pr.number, pr.updated), (7, false));
        let run = outcome.as_run(Utc::now());
        assert_eq!(run.role, "committer");
        assert_eq!(
            run.pull_request.as_deref(),
            Some("https://github.example/o/r/pull/7")
        );
        assert_eq!(run.status, RunStatus::Failed, "a line not recorded");
        assert_eq!(run.failures[0].class, "not_recorded");
        let nothing = BatchOutcome {
            result: BatchResult::NothingToRecord,
            rejected: Vec::new(),
            ..outcome
        };
        assert!(nothing.pull_request().is_none());
        assert_eq!(nothing.as_run(Utc::now()).status, RunStatus::Succeeded);
    }
}
