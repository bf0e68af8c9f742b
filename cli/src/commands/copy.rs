//! `image-mirror copy SRC_REF DST_REF`: one image, no queue.

use anyhow::Result;
use image_mirror_common::ImageRef;
use image_mirror_worker::{CopyOutcome, CopyReport};

use crate::args::CopyArgs;
use crate::exit::{BadInput, FAILED, OK};
use crate::registry_client;

pub async fn run(args: &CopyArgs) -> Result<u8> {
    let source: ImageRef = args
        .source
        .parse()
        .map_err(|e| BadInput(format!("source: {e}")))?;
    let target: ImageRef = args
        .target
        .parse()
        .map_err(|e| BadInput(format!("target: {e}")))?;
    let drift = registry_client::drift_policy(args.on_drift, args.backup_tag.as_deref())?;
    let engine = registry_client::engine(&args.registry, &args.transfer)?
        .with_drift(drift)
        .with_attachments(args.attach.options())
        .with_trusted_keys(args.attach.trusted_keys()?);
    match engine.copy(&source, &target).await {
        Ok(report) => {
            print_report(&source, &target, &report);
            Ok(if report.outcome == CopyOutcome::Drifted {
                FAILED
            } else {
                OK
            })
        }
        Err(e) => {
            eprintln!(
                "error: copy {source} -> {target} failed ({}): {e}",
                e.class()
            );
            Ok(FAILED)
        }
    }
}

fn print_report(source: &ImageRef, target: &ImageRef, r: &CopyReport) {
    let what = match r.outcome {
        CopyOutcome::Copied => "copied",
        CopyOutcome::AlreadyPresent => "already present",
        CopyOutcome::Drifted => "drifted (kept)",
    };
    println!("{what}: {source} -> {target}");
    println!("  digest      {}", r.digest);
    match (r.outcome, &r.target_digest) {
        (CopyOutcome::Drifted, Some(held)) => println!("  target has  {held}"),
        (_, Some(replaced)) => println!("  replaced    {replaced}"),
        _ => {}
    }
    println!("  media type  {}", r.media_type);
    if !r.platforms.is_empty() {
        println!("  platforms   {}", r.platforms.join(", "));
    }
    println!(
        "  blobs       {} copied, {} mounted, {} skipped",
        r.blobs_copied, r.blobs_mounted, r.blobs_skipped
    );
    println!("  bytes sent  {}", r.bytes_sent);
    println!("  manifests   {} pushed", r.manifests_pushed);
    if r.resumes > 0 {
        println!("  resumed     {} times", r.resumes);
    }
    if let Some(key) = &r.attached.verified_by {
        println!("  signed by   {key}");
    }
    if r.attached.referrers > 0 || r.attached.digest_tags > 0 {
        println!(
            "  attached    {} referrers, {} digest tags",
            r.attached.referrers, r.attached.digest_tags
        );
    }
    println!(
        "  time        {:.2}s (resolve {:.2}s, blobs {:.2}s, manifests {:.2}s)",
        r.duration.as_secs_f64(),
        r.phases.resolve.as_secs_f64(),
        r.phases.blobs.as_secs_f64(),
        r.phases.manifests.as_secs_f64()
    );
}
