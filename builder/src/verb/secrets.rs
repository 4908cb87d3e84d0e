//! `piimg secrets init`.

use crate::cli::SecretsCommand;
use anyhow::Context;
use std::io::Write;

/// `(service, key)` credentials `secrets init` generates for the base services.
/// HOOK: the manifests module owns this list; empty until it lands.
pub const SERVICE_CREDENTIALS: &[(&str, &str)] = &[];

/// Runs a `piimg secrets` subcommand.
pub fn secrets(cmd: &SecretsCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        SecretsCommand::Init(args) => {
            let cluster = crate::profile::load_cluster(&args.profiles_dir)?;
            let path = args.profiles_dir.join(&cluster.cluster.secrets);
            let made = crate::secrets::init(&path, SERVICE_CREDENTIALS)?;
            writeln!(
                out,
                "wrote {} (mode 0600) for cluster {} (id {}); keep it private and backed up",
                path.display(),
                cluster.cluster.name,
                made.cluster_id
            )
            .context("cannot write to stdout")?;
            Ok(())
        }
    }
}
