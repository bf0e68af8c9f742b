//! `image-mirror completions SHELL` and `image-mirror man`: the command line described for
//! shells and for `man`, from the same definition clap parses with.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs, ManArgs};
use crate::exit::OK;

/// Prints the completion script of `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "image-mirror", &mut script);
    write_stdout(&script)?;
    Ok(OK)
}

/// Prints the main manual page, or writes every command's page into `args.dir`.
pub fn man(args: &ManArgs) -> Result<u8> {
    let command = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing the pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("rendering the page")?;
            write_stdout(&page)?;
        }
    }
    Ok(OK)
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    crate::console::out_bytes(bytes);
    Ok(())
}
