//! `piimg secrets init` and `piimg secrets show SERVICE`.

use crate::cli::{SecretsCommand, SecretsShowArgs};
use crate::manifests::{credentials, Service};
use anyhow::Context;
use std::io::Write;

/// Runs a `piimg secrets` subcommand.
pub fn secrets(cmd: &SecretsCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        SecretsCommand::Init(args) => {
            let cluster = crate::profile::load_cluster(&args.profiles_dir)?;
            let path = args.profiles_dir.join(&cluster.cluster.secrets);
            let made = crate::secrets::init(&path)?;
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
        SecretsCommand::Show(args) => show(args, out),
    }
}

/// Services that have a login, for messages.
fn with_login() -> Vec<&'static str> {
    credentials::required().iter().map(|(s, _)| *s).collect()
}

/// `piimg secrets show SERVICE`: the one place a secret is printed on purpose, to the owner
/// of the secrets file who asked for it. Credentials missing from an older file are generated
/// into it first, exactly as the next server build would.
fn show(args: &SecretsShowArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let name = args.service.as_str();
    let Some(service) = Service::from_name(name) else {
        let all: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
        anyhow::bail!(
            "no service `{name}`: piimg's base services are {}; those with a login are {}",
            all.join(", "),
            with_login().join(", ")
        );
    };
    if !with_login().contains(&service.name()) {
        anyhow::bail!(
            "{service} has no login of its own (its UI is not exposed; reach it with `kubectl port-forward`): services with a login are {}",
            with_login().join(", ")
        );
    }
    let cluster = crate::profile::load_cluster(&args.profiles_dir)?;
    let path = args.profiles_dir.join(&cluster.cluster.secrets);
    let added = crate::secrets::add_services(&path)?;
    if !added.is_empty() {
        tracing::info!(
            "{}: generated {} missing service credentials",
            path.display(),
            added.len()
        );
    }
    let secrets = crate::secrets::load(&path)?;
    if !cluster.cluster.services.is_enabled(service) {
        tracing::warn!(
            "{service} is turned off in {} ([services] {service} = false): no image runs it",
            cluster.file.display()
        );
    }
    let login = credentials::login_for(service.name(), &secrets.services).with_context(|| {
        format!(
            "{}: no login for {service}: run `piimg secrets show {service}` again, or restore the file from its backup",
            path.display()
        )
    })?;
    out.write_all(login.as_bytes())
        .context("cannot write to stdout")
}
