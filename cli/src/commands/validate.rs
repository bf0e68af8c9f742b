//! `image-mirror validate`: parse images-list and config.json and report every problem of
//! both at once. A config.json that does not exist is no rules: only tag discovery needs one.

use anyhow::Result;
use image_mirror_common::{Config, ConfigError, ImagesList};

use crate::args::ValidateArgs;
use crate::exit::{BadInput, OK};
use crate::outln;

pub fn run(args: &ValidateArgs) -> Result<u8> {
    let files = &args.files;
    let list = ImagesList::load(files.images_list());
    let mut errors = Vec::new();
    match &list {
        Ok(list) => outln!("{}: {} entries", files.images_list().display(), list.len()),
        Err(e) => errors.push(e.to_string()),
    }
    let config = match Config::load(&files.config) {
        Err(ConfigError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            outln!(
                "{}: absent: no rules (only tag discovery needs them)",
                files.config.display()
            );
            Ok(None)
        }
        loaded => loaded.map(Some),
    };
    match &config {
        Ok(Some(config)) => {
            outln!("{}: {} rules", files.config.display(), config.rules().len());
            for (key, kind) in config.unsupported() {
                outln!(
                    "  {key}: versionSource kind {kind:?} is not supported; this rule is skipped"
                );
            }
        }
        Ok(None) => {}
        Err(e) => errors.push(e.to_string()),
    }
    if let (Ok(list), Ok(Some(config))) = (&list, &config) {
        for rule in config.rules() {
            for image in &rule.images {
                if list.targets_of(image).is_empty() {
                    outln!(
                        "  {}: image {} has no line in {}, so new tags have no target",
                        rule.key,
                        image.short(),
                        files.images_list().display()
                    );
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(OK)
    } else {
        Err(BadInput(errors.join("\n")).into())
    }
}
