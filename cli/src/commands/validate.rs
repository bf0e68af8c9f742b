//! `image-mirror validate`: parse images-list and config.json and report every problem.

use anyhow::Result;
use image_mirror_common::{Config, ImagesList};

use crate::args::ValidateArgs;
use crate::exit::{BadInput, OK};

pub fn run(args: &ValidateArgs) -> Result<u8> {
    let files = &args.files;
    let list = ImagesList::load(files.images_list());
    let config = Config::load(&files.config);
    let mut errors = Vec::new();
    match &list {
        Ok(list) => println!("{}: {} entries", files.images_list().display(), list.len()),
        Err(e) => errors.push(e.to_string()),
    }
    match &config {
        Ok(config) => {
            println!("{}: {} rules", files.config.display(), config.rules().len());
            for (key, kind) in config.unsupported() {
                println!(
                    "  {key}: versionSource kind {kind:?} is not supported; this rule is skipped"
                );
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    if let (Ok(list), Ok(config)) = (&list, &config) {
        for rule in config.rules() {
            for image in &rule.images {
                if list.targets_of(image).is_empty() {
                    println!(
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
