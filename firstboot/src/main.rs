//! `piimg-firstboot`: parses, dispatches, prints the error chain; the work lives in the library.

use clap::Parser;
use piimg_firstboot::cli::{Cli, Verb};
use piimg_firstboot::paths::NodePaths;
use piimg_firstboot::run::{run, Options};
use piimg_firstboot::system::{DeviceSource, Host, Mounter};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    piimg_firstboot::logging::init(cli.verbose);
    let s = &cli.seams;
    let host = Host {
        devices: s
            .devices
            .clone()
            .map_or(DeviceSource::Sysfs, DeviceSource::File),
        mounter: s
            .fake_mount
            .clone()
            .map_or(Mounter::Kernel, Mounter::Record),
        systemctl: s.systemctl.clone(),
        k3s: s.k3s.clone(),
        update_grub: s.update_grub.clone(),
        netplan: s.netplan.clone(),
        backoff_unit: Duration::from_millis(s.backoff_ms),
        http_timeout: Duration::from_secs(10),
    };
    let opts = Options {
        config: cli.config.clone(),
        root: s.root.clone(),
        dry_run: cli.dry_run,
        host,
        kubelet_healthz: s.kubelet_healthz.clone(),
    };
    match cli.command.unwrap_or(Verb::Run) {
        Verb::Run => match run(&opts) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("piimg-firstboot: {e}");
                ExitCode::from(2)
            }
        },
        Verb::Identify => {
            let paths = NodePaths::new(&opts.root);
            let wait = Duration::from_secs(s.nic_wait_secs);
            match piimg_firstboot::identify::identify(&paths, &opts.host, wait, opts.dry_run) {
                Ok(outcome) => {
                    println!("{}", piimg_firstboot::identify::describe(&outcome));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("piimg-firstboot: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Verb::Status => {
            let paths = NodePaths::new(&opts.root);
            let state_path = paths.node(piimg_firstboot::state::STATE_PATH);
            let state = match piimg_firstboot::state::State::load(&state_path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("piimg-firstboot: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let last = std::fs::read(paths.node(piimg_firstboot::announce::STATUS_PATH))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            print!("{}", piimg_firstboot::status::render(&state, last.as_ref()));
            ExitCode::SUCCESS
        }
    }
}
