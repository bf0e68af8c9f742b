//! A notice as a Slack incoming-webhook message: a short `text` (what notifications and
//! clients without blocks show), a header, a summary, and a block per failure, drift or
//! deferral, at most [`MAX_LISTED`] of them and a line saying how many more, so that a run
//! with thousands of failures stays within Slack's limits (50 blocks a message, 3,000
//! characters a section, 150 a header).

use serde_json::{json, Value};

use crate::event::{JobProblem, Notice, RunFinished};

/// Problems listed one block each; the rest are counted.
pub const MAX_LISTED: usize = 20;
/// Slack's longest section text.
const SECTION_MAX: usize = 3000;
/// Slack's longest header text.
const HEADER_MAX: usize = 150;

/// The Slack message of `notice`.
pub fn message(notice: &Notice) -> Value {
    match notice {
        Notice::RunFinished(run) => run_message(run),
        Notice::JobDeadLettered(d) => {
            let text = format!("image-mirror: job dead-lettered: {}", d.job);
            json!({
                "text": cap(&text, SECTION_MAX),
                "blocks": [
                    header("image-mirror: a job was dead-lettered"),
                    section(&format!(
                        "*{}*\n`{}` after {} attempt(s): {}",
                        escape(&d.job),
                        escape(&d.class),
                        d.attempts,
                        escape(&d.message)
                    )),
                ],
            })
        }
        Notice::PullRequest(p) => {
            let verb = if p.updated { "updated" } else { "opened" };
            let text = format!(
                "image-mirror {verb} pull request #{} ({} lines)",
                p.number,
                p.lines.len()
            );
            let listed: Vec<String> = p.lines.iter().take(MAX_LISTED).map(|l| escape(l)).collect();
            let mut body = format!(
                "<{}|Pull request #{}> {verb}: {} line(s)\n```{}```",
                p.url,
                p.number,
                p.lines.len(),
                listed.join("\n")
            );
            if p.lines.len() > MAX_LISTED {
                body.push_str(&format!("\n…and {} more", p.lines.len() - MAX_LISTED));
            }
            json!({
                "text": cap(&text, SECTION_MAX),
                "blocks": [header(&text), section(&body)],
            })
        }
    }
}

fn run_message(run: &RunFinished) -> Value {
    let headline = run.headline();
    let mut summary = escape(&headline);
    summary.push_str(&format!("\n{} bytes sent", run.bytes_sent));
    if !run.new_images.is_empty() {
        summary.push_str(&format!(", {} new image line(s)", run.new_images.len()));
    }
    if let Some(pr) = &run.pull_request {
        summary.push_str(&format!("\n<{pr}|The pull request>"));
    }
    let mut blocks = vec![header(&headline), section(&summary)];
    let problems: Vec<&JobProblem> = run
        .failures
        .iter()
        .chain(&run.drifted)
        .chain(&run.deferred)
        .collect();
    if !problems.is_empty() {
        blocks.push(json!({"type": "divider"}));
    }
    for p in problems.iter().take(MAX_LISTED) {
        blocks.push(section(&format!(
            "*{}*\n`{}`: {}",
            escape(&p.job),
            escape(&p.class),
            escape(&p.message)
        )));
    }
    if problems.len() > MAX_LISTED {
        blocks.push(json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": format!("…and {} more: see the run's log or `status --runs`", problems.len() - MAX_LISTED),
            }],
        }));
    }
    json!({ "text": cap(&headline, SECTION_MAX), "blocks": blocks })
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": cap(text, HEADER_MAX)}})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cap(text, SECTION_MAX)}})
}

/// `text` cut to at most `max` characters, an ellipsis marking a cut.
fn cap(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn control characters, escaped as its documentation asks.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
