//! `image-mirror sort [--check]`: the `sort -V` order of images-list.

use anyhow::Result;
use image_mirror_common::ImagesList;

use crate::args::SortArgs;
use crate::exit::{BadInput, FAILED, OK};
use crate::outln;

pub fn run(args: &SortArgs) -> Result<u8> {
    let path = &args.list.images_list;
    let mut list = ImagesList::load(path).map_err(|e| BadInput(e.to_string()))?;
    match list.first_disorder() {
        None => {
            outln!(
                "{}: {} entries in sort -V order",
                path.display(),
                list.len()
            );
            Ok(OK)
        }
        Some(d) if args.check => {
            outln!(
                "{}:{}: out of order: {:?} must come before line {}",
                path.display(),
                d.line,
                d.text,
                d.after_line
            );
            Ok(FAILED)
        }
        Some(_) => {
            list.sort();
            list.save(path)?;
            outln!("{}: sorted {} entries", path.display(), list.len());
            Ok(OK)
        }
    }
}
