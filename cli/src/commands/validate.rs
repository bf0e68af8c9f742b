//! `image-mirror validate`: parse images-list and config.json and report every problem.

use anyhow::Result;
use image_mirror_common::{Config, ImagesList};

use crate::args::GlobalArgs;
use crate::exit::{BadInput, OK};

pub fn run(global: &GlobalArgs) -> Result<u8> {
    let list = ImagesList::load(&global.images_list);
    let config = Config::load(&global.config);
    let mut errors = Vec::new();
    match &list {
        Ok(list) => println!("{}: {} entries", global.images_list.display(), list.len()),
        Err(e) => errors.push(e.to_string()),
    }
    match &config {
        Ok(config) => {
            println!(
                "{}: {} rules",
                global.config.display(),
                config.rules().len()
            );
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
                        global.images_list.display()
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
