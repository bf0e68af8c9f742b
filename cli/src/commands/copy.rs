//! `image-mirror copy SRC_REF DST_REF`: one image, no queue, its progress shown as it goes;
//! Ctrl-C stops it at a checkpoint, and the same copy run again goes on from there.

use std::sync::Arc;

use anyhow::Result;
use image_mirror_common::ImageRef;
use image_mirror_worker::{Activity, CopyError, CopyOutcome, CopyReport, StopSignal};
use serde_json::{json, Value};

use crate::args::CopyArgs;
use crate::console::{say, Level};
use crate::exit::{BadInput, FAILED, OK};
use crate::progress::{Display, Setup};
use crate::{outln, registry_client, stop};

pub async fn run(args: &CopyArgs) -> Result<u8> {
    let source = ImageRef::from_arg(&args.source).map_err(|e| BadInput(format!("source: {e}")))?;
    let target = ImageRef::from_arg(&args.target).map_err(|e| BadInput(format!("target: {e}")))?;
    let drift = registry_client::drift_policy(args.on_drift, args.backup_tag.as_deref())?;
    let (stop_copies, activity) = (StopSignal::new(), Activity::new());
    let engine = registry_client::engine(&args.registry, &args.transfer)?
        .with_drift(drift)
        .with_attachments(args.attach.options())
        .with_trust(args.attach.trust()?)
        .with_platforms(args.platforms.platforms.clone())
        .with_on_sparse_refused(args.sparse.policy())
        .with_policy_hook(args.policy.hook())
        .with_attester(args.attach.attester()?)
        .with_stop(stop_copies.clone())
        .with_activity(Arc::clone(&activity));
    let display = Display::start(
        activity,
        &Setup {
            jobs: 1,
            interval: args.progress.progress_interval,
            job_lines: false,
        },
    );
    let copy = engine.copy(&source, &target);
    tokio::pin!(copy);
    let (result, stopped) = tokio::select! {
        r = &mut copy => (r, None),
        why = stop::requested() => {
            stop_copies.stop();
            (copy.await, Some(why))
        }
    };
    display.finish();
    let untagged = source.tag().is_none() && target.tag().is_none();
    let json = args.output.json();
    match result {
        Ok(report) => {
            if json {
                outln!("{}", report_json(&source, &target, &report, untagged));
            } else {
                print_report(&source, &target, &report, untagged);
            }
            Ok(if report.outcome == CopyOutcome::Drifted {
                FAILED
            } else {
                OK
            })
        }
        Err(CopyError::Interrupted) => {
            if json {
                outln!(
                    "{}",
                    json!({"outcome": "interrupted", "source": source.to_string(), "target": target.to_string()})
                );
            }
            say(
                Level::Warn,
                "interrupted",
                format!(
                    "interrupted: copy {source} -> {target} stopped; run the same copy again to \
                     go on from where the registry has the upload"
                ),
            );
            Ok(stopped.map_or(FAILED, stop::Why::exit_code))
        }
        Err(e) => {
            if json {
                outln!(
                    "{}",
                    json!({"outcome": "failed", "source": source.to_string(), "target": target.to_string(), "class": e.class(), "message": e.to_string()})
                );
            }
            say(
                Level::Error,
                "failed",
                format!(
                    "error: copy {source} -> {target} failed ({}): {e}",
                    e.class()
                ),
            );
            Ok(FAILED)
        }
    }
}

fn print_report(source: &ImageRef, target: &ImageRef, r: &CopyReport, untagged: bool) {
    let what = match r.outcome {
        CopyOutcome::Copied => "copied",
        CopyOutcome::AlreadyPresent => "already present",
        CopyOutcome::Drifted => "drifted (kept)",
    };
    outln!("{what}: {source} -> {target}");
    outln!("  digest      {}", r.digest);
    if untagged {
        outln!(
            "  tag         none: the target holds it by digest only (give the target a tag, \
             as in {}:TAG, to tag it)",
            target.repository()
        );
    }
    match (r.outcome, &r.target_digest) {
        (CopyOutcome::Drifted, Some(held)) => outln!("  target has  {held}"),
        (_, Some(replaced)) => outln!("  replaced    {replaced}"),
        _ => {}
    }
    outln!("  media type  {}", r.media_type);
    match &r.platform_subset {
        Some(subset) => {
            outln!("  platforms   {}", subset.describe(&r.platforms));
            if let Some(rewritten) = &subset.rewritten_digest {
                outln!("  target has  {rewritten} (an index of these platforms alone: the target refused the source's with only them present)");
            }
        }
        None if !r.platforms.is_empty() => outln!("  platforms   {}", r.platforms.join(", ")),
        None => {}
    }
    outln!(
        "  blobs       {} copied, {} mounted, {} skipped",
        r.blobs_copied,
        r.blobs_mounted,
        r.blobs_skipped
    );
    outln!("  bytes sent  {}", r.bytes_sent);
    outln!("  manifests   {} pushed", r.manifests_pushed);
    if r.resumes > 0 {
        outln!("  resumed     {} times", r.resumes);
    }
    if let Some(signer) = &r.attached.verified_by {
        let how = if r.attached.identity_verified {
            "keyless identity"
        } else {
            "key"
        };
        outln!("  signed by   {signer} ({how}, verified)");
    }
    if let Some(state) = r.attached.attestation {
        outln!("  attested    {state} (the target digest's .att tag and a bundle referrer)");
    }
    if let Some(decision) = r.attached.policy {
        outln!("  policy hook {decision}");
    }
    if r.attached.referrers > 0 || r.attached.digest_tags > 0 {
        outln!(
            "  attached    {} referrers, {} digest tags",
            r.attached.referrers,
            r.attached.digest_tags
        );
    }
    outln!(
        "  time        {:.2}s (resolve {:.2}s, blobs {:.2}s, manifests {:.2}s)",
        r.duration.as_secs_f64(),
        r.phases.resolve.as_secs_f64(),
        r.phases.blobs.as_secs_f64(),
        r.phases.manifests.as_secs_f64()
    );
}

/// The report as one JSON object (docs/output.md).
fn report_json(source: &ImageRef, target: &ImageRef, r: &CopyReport, untagged: bool) -> Value {
    json!({
        "outcome": match r.outcome {
            CopyOutcome::Copied => "copied",
            CopyOutcome::AlreadyPresent => "already_present",
            CopyOutcome::Drifted => "drifted",
        },
        "source": source.to_string(),
        "target": target.to_string(),
        "digest": r.digest,
        "tagged": !untagged,
        "target_digest": r.target_digest,
        "media_type": r.media_type,
        "platforms": r.platforms,
        "platform_subset": r.platform_subset,
        "blobs": {"copied": r.blobs_copied, "mounted": r.blobs_mounted, "skipped": r.blobs_skipped},
        "bytes_sent": r.bytes_sent,
        "manifests_pushed": r.manifests_pushed,
        "resumes": r.resumes,
        "referrers": r.attached.referrers,
        "digest_tags": r.attached.digest_tags,
        "signed_by": r.attached.verified_by,
        "identity_verified": r.attached.identity_verified,
        "attestation": r.attached.attestation,
        "policy": r.attached.policy,
        "seconds": r.duration.as_secs_f64(),
        "phases": {
            "resolve": r.phases.resolve.as_secs_f64(),
            "blobs": r.phases.blobs.as_secs_f64(),
            "manifests": r.phases.manifests.as_secs_f64(),
        },
    })
}
