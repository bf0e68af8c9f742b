//! What a run in one process came to (`run`, `add-tag`, `add-image`), for people or, with
//! `--output json`, as one JSON document on stdout (its shape is in docs/output.md); each
//! failure, drift, deferral and unreachable host is also a line on stderr. The exit status.

use image_mirror_committer::RunSummary;
use image_mirror_common::{JobEvent, Outcome};
use serde_json::{json, Value};

use crate::console::{say, Level};
use crate::exit::{FAILED, OK};
use crate::outln;
use crate::pipeline::Mirrored;

/// How a run is reported.
pub struct Reporting<'a> {
    /// One JSON document instead of lines.
    pub json: bool,
    /// Where recorded lines went.
    pub images_list: &'a std::path::Path,
    /// A drifted target fails the run.
    pub fail_on_drift: bool,
    /// Discovery rules that failed before the run (`run --discover`).
    pub rules_failed: usize,
}

/// Reports `mirrored`; the exit status.
pub fn report(m: &Mirrored, how: &Reporting<'_>) -> u8 {
    let s = RunSummary::of(&m.events);
    problems(m, &s);
    if how.json {
        outln!("{}", document(m, &s, how));
    } else {
        recorded(m, how.images_list);
        time_spent(m);
        pulls(m);
        outln!("{}", summary_line(m, &s, how.rules_failed));
    }
    if let Some(why) = m.stopped {
        say(
            Level::Warn,
            "interrupted",
            format!(
                "interrupted: {} jobs did not end; run the same command again to go on (uploads \
                 in chunks go on from where the registry has them)",
                m.unfinished
            ),
        );
        return why.exit_code();
    }
    let recorded_all = m.rejected.is_empty();
    if s.failed == 0
        && s.deferred == 0
        && (s.drifted == 0 || !how.fail_on_drift)
        && recorded_all
        && how.rules_failed == 0
    {
        OK
    } else {
        FAILED
    }
}

/// Each drift, failure, deferral and unreachable host, and each line not recorded, on stderr.
fn problems(m: &Mirrored, s: &RunSummary) {
    for why in &m.rejected {
        say(Level::Warn, "not_recorded", format!("not recorded: {why}"));
    }
    for e in m.events.iter().filter(|e| e.outcome == Outcome::Drifted) {
        let source = e.digest.as_ref().map_or(String::new(), ToString::to_string);
        let target = e
            .target_digest
            .as_ref()
            .map_or(String::new(), ToString::to_string);
        say(
            Level::Warn,
            "drifted",
            format!(
                "drifted: {}: the target holds {target}, the source {source}; kept (--on-drift overwrite replaces it)",
                e.describe()
            ),
        );
    }
    for e in m.events.iter().filter(|e| e.outcome == Outcome::Failed) {
        let (class, message) = e
            .error
            .as_ref()
            .map_or(("unknown", ""), |f| (f.class.as_str(), f.message.as_str()));
        say(
            Level::Error,
            "failed",
            format!("failed: {}: {class}: {message}", e.describe()),
        );
    }
    for e in m.events.iter().filter(|e| e.outcome == Outcome::Deferred) {
        let why = e.error.as_ref().map_or("", |f| f.message.as_str());
        say(
            Level::Warn,
            "deferred",
            format!("deferred: {}: {why}", e.describe()),
        );
    }
    for host in &s.unreachable {
        say(
            Level::Error,
            "unreachable",
            format!("unreachable: {} ({} jobs)", host.message, host.jobs),
        );
    }
}

/// The lines the committer added to the local images-list.
fn recorded(m: &Mirrored, images_list: &std::path::Path) {
    if m.recorded.is_empty() {
        return;
    }
    outln!(
        "recorded {} new line(s) in {}",
        m.recorded.len(),
        images_list.display()
    );
    for e in &m.recorded {
        outln!("  + {}", e.line());
    }
}

/// Where the time of the jobs went, summed over jobs (several run at once); nothing when no
/// job ran.
fn time_spent(m: &Mirrored) {
    if m.events.is_empty() {
        return;
    }
    let sum = |f: fn(&JobEvent) -> u64| {
        std::time::Duration::from_millis(m.events.iter().map(f).sum::<u64>()).as_secs_f64()
    };
    let job_retries: u32 = m.events.iter().map(|e| e.attempts.saturating_sub(1)).sum();
    outln!(
        "time in jobs (summed over jobs running at once): resolve {:.1}s, blob transfer {:.1}s, \
         manifest push {:.1}s, waiting on registry retries {:.1}s ({} requests retried, {} jobs retried)",
        sum(|e| e.resolve_ms),
        sum(|e| e.blobs_ms),
        sum(|e| e.manifests_ms),
        m.retry_wait.as_secs_f64(),
        m.retries,
        job_retries
    );
}

/// The pulls (manifest GETs, as Docker Hub counts them) each registry cost.
fn pulls(m: &Mirrored) {
    let spent: Vec<String> = m
        .quotas
        .iter()
        .filter(|(_, q)| q.pulls + q.heads + q.refused > 0)
        .map(|(registry, q)| {
            let mut s = format!("{registry} {} pulls, {} HEADs", q.pulls, q.heads);
            if q.refused > 0 {
                s.push_str(&format!(", {} refused", q.refused));
            }
            if let Some(left) = q.remaining {
                s.push_str(&format!(", {left} left"));
            }
            s
        })
        .collect();
    if !spent.is_empty() {
        outln!("registry quotas: {}", spent.join("; "));
    }
}

/// `summary: 2 copied, 10 already present, 0 failed, 48213337 bytes sent, 14.2s`.
fn summary_line(m: &Mirrored, s: &RunSummary, rules_failed: usize) -> String {
    let mut parts = vec![
        format!("{} copied", s.copied),
        format!("{} already present", s.already_present),
    ];
    parts.push(if s.failed == 0 {
        "0 failed".to_owned()
    } else {
        format!("{} failed ({})", s.failed, s.causes())
    });
    if s.deferred > 0 {
        parts.push(format!("{} deferred (rate limit)", s.deferred));
    }
    if s.drifted > 0 {
        parts.push(format!("{} drifted", s.drifted));
    }
    parts.extend(trust_parts(s));
    let rewritten = m
        .events
        .iter()
        .filter(|e| {
            e.platform_subset
                .as_ref()
                .is_some_and(|s| s.rewritten_digest.is_some())
        })
        .count();
    if rewritten > 0 {
        parts.push(format!(
            "{rewritten} indexes rewritten for their platforms (new digests in the report)"
        ));
    }
    if rules_failed > 0 {
        parts.push(format!("{rules_failed} rules failed"));
    }
    if m.stopped.is_some() {
        parts.push(format!("{} not finished (interrupted)", m.unfinished));
    }
    parts.push(format!("{} bytes sent", s.bytes_sent));
    parts.push(format!("{:.1}s", m.elapsed.as_secs_f64()));
    format!("summary: {}", parts.join(", "))
}

/// What travelled with the images and what trust decided: referrers and digest tags,
/// signatures (of them, identities) verified, attestations pushed, the policy hook's decisions.
fn trust_parts(s: &RunSummary) -> Vec<String> {
    let mut parts = Vec::new();
    if s.attached > 0 {
        parts.push(format!("{} referrers and digest tags", s.attached));
    }
    match (s.signed, s.identities_verified) {
        (0, _) => {}
        (v, 0) => parts.push(format!("{v} signatures verified")),
        (v, i) => parts.push(format!("{v} signatures verified ({i} keyless identities)")),
    }
    if s.attestations_pushed > 0 {
        parts.push(format!("{} attestations pushed", s.attestations_pushed));
    }
    if !s.policy_decisions.is_empty() {
        let decisions: Vec<String> = s
            .policy_decisions
            .iter()
            .map(|(d, n)| format!("{n} {d}"))
            .collect();
        parts.push(format!("policy hook: {}", decisions.join(", ")));
    }
    parts
}

/// The run as one JSON document (docs/output.md).
fn document(m: &Mirrored, s: &RunSummary, how: &Reporting<'_>) -> Value {
    json!({
        "summary": {
            "copied": s.copied,
            "already_present": s.already_present,
            "failed": s.failed,
            "failed_by_class": s.failures_by_class,
            "deferred": s.deferred,
            "drifted": s.drifted,
            "not_finished": m.unfinished,
            "interrupted": m.stopped.is_some(),
            "rules_failed": how.rules_failed,
            "referrers_and_digest_tags": s.attached,
            "signatures_verified": s.signed,
            "identities_verified": s.identities_verified,
            "attestations_pushed": s.attestations_pushed,
            "policy_decisions": s.policy_decisions,
            "bytes_sent": s.bytes_sent,
            "seconds": m.elapsed.as_secs_f64(),
        },
        "events": m.events,
        "recorded": m.recorded.iter().map(image_mirror_common::Entry::line).collect::<Vec<_>>(),
        "not_recorded": m.rejected,
        "unreachable": s.unreachable.iter().map(|u| json!({"host": u.message, "jobs": u.jobs})).collect::<Vec<_>>(),
        "registry_quotas": m.quotas.iter().map(|(registry, q)| json!({
            "registry": registry,
            "pulls": q.pulls,
            "heads": q.heads,
            "refused": q.refused,
            "remaining": q.remaining,
        })).collect::<Vec<_>>(),
    })
}
