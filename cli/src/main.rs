//! The `image-mirror` binary: parses the command line, sets up logging, and hands over to the
//! role or tool asked for. Nothing else lives here.

mod args;
mod broker;
mod commands;
mod console;
mod discovery;
mod exit;
mod notifications;
mod pipeline;
mod planning;
mod progress;
mod registry_client;
mod run_report;
mod serve;
mod stop;
mod telemetry;

use std::process::ExitCode;

use crate::args::{Command, Parsed, ProducerCommand};

fn main() -> ExitCode {
    let parsed = args::parse();
    // One `copy` is a handful of streams that mostly wait on the network: one thread serves
    // them with less CPU than a pool whose threads keep waking each other (a fifth less in
    // the corpus benchmark, and a little faster). The long-running roles keep a thread per
    // core for their many jobs.
    let mut runtime = match parsed.cli.command {
        Command::Copy(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(parsed)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(parsed: Parsed) -> ExitCode {
    let Parsed { cli, ignored } = parsed;
    let prints_job_lines = matches!(
        cli.command,
        Command::Run(_)
            | Command::AddTag(_)
            | Command::AddImage(_)
            | Command::Export(_)
            | Command::Import(_)
    );
    console::init(cli.global.log_format, cli.global.quiet);
    let verbosity = telemetry::Verbosity {
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
    };
    let telemetry = telemetry::init(
        cli.global.log_format,
        verbosity,
        cli.command.role(),
        prints_job_lines,
    );
    stop::install();
    for i in ignored {
        tracing::warn!(
            "{} is not a flag of `{}`: ignored (`image-mirror {} --help` lists its flags)",
            i.flag,
            i.command,
            i.command
        );
    }
    let result = match &cli.command {
        Command::Sort(args) => commands::sort::run(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Copy(args) => commands::copy::run(args).await,
        Command::Producer(ProducerCommand::Sync(args)) => commands::producer::sync(args).await,
        Command::Producer(ProducerCommand::Discover(args)) => commands::discover::run(args).await,
        Command::Producer(ProducerCommand::AddTag(args)) => {
            commands::add_tag::run(&args.what, &args.add, None).await
        }
        Command::Producer(ProducerCommand::AddImage(args)) => {
            commands::add_tag::run_add_image(&args.what, &args.hub, &args.add, None).await
        }
        Command::Tags(args) => commands::tags::run(args).await,
        Command::AddTag(args) => {
            commands::add_tag::run(&args.what, &args.add, Some(&args.here)).await
        }
        Command::AddImage(args) => {
            commands::add_tag::run_add_image(&args.what, &args.hub, &args.add, Some(&args.here))
                .await
        }
        Command::Check(args) => commands::check::run(args).await,
        Command::Committer(args) => commands::committer::run(args).await,
        Command::Worker(args) => commands::worker::run(args).await,
        Command::Run(args) => commands::run::run(args).await,
        Command::Plan(args) => commands::plan::run(args).await,
        Command::Export(args) => commands::bundle::export(args).await,
        Command::Import(args) => commands::bundle::import(args).await,
        Command::Serve(args) => commands::bundle::serve(args).await,
        Command::Status(args) => commands::status::run(args).await,
        Command::Completions(args) => commands::manual::completions(args),
        Command::Man(args) => commands::manual::man(args),
    };
    let code = match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            exit::print_error(&err);
            exit::code_for(&err)
        }
    };
    let code = if console::stdout_closed() {
        ExitCode::from(console::CLOSED_PIPE)
    } else {
        code
    };
    // The batch exporter blocks while it sends: off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}
