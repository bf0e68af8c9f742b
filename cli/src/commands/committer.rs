//! `image-mirror committer`: consumes completion events from RabbitMQ and records the mirrored
//! tags, a pull request per batch (--github-repo) or the local images-list edited in place.
//! Runs until SIGTERM/SIGINT; exit 1 when GitHub or the file refuse for good (the batch's
//! events stay in the queue).

use anyhow::Result;
use image_mirror_committer::{
    run_committer, BatchOptions, BatchOutcome, BatchResult, Committer, Proposal,
    PullRequestSettings, Recorder,
};
use image_mirror_common::config::GithubRepo;
use image_mirror_github::GithubClient;

use crate::args::CommitterArgs;
use crate::broker::Patience;
use crate::console::{say, Level};
use crate::exit::{BadInput, OK};
use crate::outln;
use crate::{broker, notifications, registry_client, serve, stop};
use image_mirror_notify::Notice;

pub async fn run(args: &CommitterArgs) -> Result<u8> {
    let notifier = notifications::notifier(&args.notify, "committer")?;
    let history = notifications::history(args.cache_dir.as_deref());
    let destination = match args.github_repo.as_deref().filter(|r| !r.trim().is_empty()) {
        Some(repo) => {
            let repo: GithubRepo = repo
                .parse()
                .map_err(|e| BadInput(format!("--github-repo {e}")))?;
            Recorder::Github {
                client: Box::new(GithubClient::from_env().map_err(|e| BadInput(e.to_string()))?),
                settings: PullRequestSettings {
                    repo,
                    base_branch: args.base_branch.clone(),
                    path: args.github_path.clone(),
                    label: Some(args.label.clone()).filter(|l| !l.is_empty()),
                },
            }
        }
        None => Recorder::Local(args.list.images_list.clone()),
    };
    let registry = registry_client::client(&args.registry, None)?;
    let mut stop = std::pin::pin!(stop::signal());
    let Some(broker) =
        broker::rabbitmq_unless_stopped(&args.broker, "committer", Patience::Wait, &mut stop)
            .await?
    else {
        return Ok(OK);
    };
    if let Some(addr) = args.metrics.metrics_addr {
        serve::start(addr, Some(std::sync::Arc::clone(&broker))).await?;
    }
    let max = args.max_batch.max(1);
    let mut consumer = broker.consume(&broker.topology().committer(), max).await?;
    match &destination {
        Recorder::Local(path) => outln!("committer: recording in {}", path.display()),
        Recorder::Github { settings, .. } => outln!(
            "committer: pull requests to {} ({} of {})",
            settings.repo,
            settings.path,
            settings.base_branch
        ),
    }
    tracing::info!(queue = %broker.topology().committer(), "committer started");
    let committer = Committer {
        broker: &broker,
        registry: &registry,
        destination: &destination,
        batch: BatchOptions {
            window: args.batch_window,
            max: usize::from(max),
            total: None,
        },
    };
    let mut started = chrono::Utc::now();
    let on_batch = |outcome: &BatchOutcome| {
        print_outcome(outcome);
        // Each batch is a run of the committer: kept in the history, told of (`--notify`)
        // in the background, the pull request it opened too.
        let run = outcome.as_run(started);
        started = chrono::Utc::now();
        if let Some(h) = &history {
            if let Err(e) = h.append(&run) {
                tracing::warn!("the batch was not kept in the history: {e}");
            }
        }
        notifier.send_in_background(Notice::RunFinished(run));
        if let Some(pr) = outcome.pull_request() {
            notifier.send_in_background(Notice::PullRequest(pr));
        }
    };
    run_committer(&committer, &mut consumer, stop, on_batch).await?;
    Ok(OK)
}

fn print_outcome(outcome: &BatchOutcome) {
    for why in &outcome.rejected {
        say(Level::Warn, "not_recorded", format!("not recorded: {why}"));
    }
    let n = outcome.events;
    match &outcome.result {
        BatchResult::NothingToRecord => outln!("batch of {n} events: nothing to record"),
        BatchResult::Written(added) => {
            outln!("batch of {n} events: recorded {} new line(s)", added.len());
            for e in added {
                outln!("  + {}", e.line());
            }
        }
        BatchResult::Proposed(Proposal::NothingNew) => {
            outln!("batch of {n} events: the base branch already has every line");
        }
        BatchResult::Proposed(Proposal::AlreadyProposed { numbers }) => outln!(
            "batch of {n} events: pull request {} already proposes these lines",
            numbers
                .iter()
                .map(|n| format!("#{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        BatchResult::Proposed(Proposal::Opened {
            number,
            url,
            branch,
            lines,
        }) => outln!(
            "batch of {n} events: opened pull request #{number} from {branch} adding {lines} line(s){}",
            url.as_deref().map(|u| format!(" ({u})")).unwrap_or_default()
        ),
    }
}
