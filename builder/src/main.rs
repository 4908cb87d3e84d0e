//! `piimg`: parses the command line, dispatches to the library and prints the error chain.

use clap::Parser;
use piimg::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    piimg_firstboot::logging::init(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("piimg: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Inspect(args) => piimg::verb::inspect(&args, &mut std::io::stdout().lock()),
        Command::Build(args) => {
            piimg::verb::build(&args, &mut std::io::stdout().lock()).map(|_| ())
        }
        Command::Plan(args) => piimg::verb::plan(&args, &mut std::io::stdout().lock()),
        Command::Secrets(cmd) => piimg::verb::secrets(&cmd, &mut std::io::stdout().lock()),
        Command::Watch(args) => piimg::verb::watch(&args),
        Command::Flash(args) => flash(&args),
    }
}

fn flash(args: &piimg::cli::FlashArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let report = piimg::flash::flash(&piimg::flash::FlashRequest {
        image: args.image.clone(),
        device: args.device.clone(),
        bmap: args.bmap.clone(),
        force: args.force,
        direct: args.direct,
        system: piimg::flash::SystemPaths::default(),
        progress: std::io::stderr().is_terminal(),
    })?;
    println!(
        "{}: wrote {} of {} bytes (mapped blocks{}), verified",
        args.device.display(),
        report.written,
        report.image_size,
        if report.direct { ", O_DIRECT" } else { "" }
    );
    Ok(())
}

/// One line: the error and each cause, separated by ": ", skipping causes already in the text.
fn error_chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
