//! `piimg plan`: resolve each selected node and print its plan.

use crate::build::Job;
use crate::cli::{PlanArgs, Selection, SourceArgs};
use crate::plan::{Inputs, RenderedManifest, SourceFile};
use crate::spec::{self, NodeSpec, Overrides, SpecErrors};
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The node names a selection means (`--all`: cluster.toml's `nodes`).
pub fn selected_nodes(sel: &Selection) -> anyhow::Result<Vec<String>> {
    if sel.all {
        Ok(crate::profile::load_cluster(&sel.profiles_dir)?
            .cluster
            .nodes)
    } else {
        Ok(sel.profiles.clone())
    }
}

fn hash_file(path: &Path) -> anyhow::Result<String> {
    crate::input_file::sha256_regular(path)
        .with_context(|| format!("{}: cannot read it; check the path", path.display()))
}

/// Inputs as far as they are known before fetching: overrides hashed, catalogue artifacts by
/// URL and pinned digest. `build` replaces these with the cache's files.
pub fn inputs_for_plan(
    spec: &NodeSpec,
    manifests: Vec<RenderedManifest>,
) -> anyhow::Result<Inputs> {
    let k3s_bin = match &spec.overrides.k3s_bin {
        Some(p) => SourceFile {
            path: p.clone(),
            sha256: hash_file(p)?,
        },
        None => SourceFile {
            path: PathBuf::from(&spec.k3s.artifact.url),
            sha256: spec.k3s.artifact.sha256.clone(),
        },
    };
    let firstboot_bin = match (&spec.overrides.firstboot_bin, &spec.firstboot_artifact) {
        (Some(p), _) => SourceFile {
            path: p.clone(),
            sha256: hash_file(p)?,
        },
        (None, Some(a)) => SourceFile {
            path: PathBuf::from(&a.url),
            sha256: a.sha256.clone(),
        },
        (None, None) => SourceFile {
            path: PathBuf::from(format!(
                "(piimg's own piimg-firstboot build for {})",
                spec.base.arch
            )),
            sha256: "unresolved".into(),
        },
    };
    let base_sha256 = match &spec.overrides.base {
        // A file override is hashed by the sources stage; plan does not read gigabytes.
        Some(b) if *b != spec.base.name => "unresolved (--base)".into(),
        _ => spec.base.sha256.clone(),
    };
    Ok(Inputs {
        k3s_bin,
        firstboot_bin,
        airgap_images: None,
        manifests,
        base_sha256,
    })
}

/// Overrides from the source args and the environment.
pub(super) fn overrides(sources: &SourceArgs) -> anyhow::Result<Overrides> {
    Ok(Overrides {
        base: sources.base.clone(),
        k3s_bin: sources.k3s_bin.clone(),
        firstboot_bin: sources.firstboot_bin.clone(),
        allow_unverified: sources.allow_unverified,
        source_date_epoch: Overrides::source_date_epoch_from_env().map_err(anyhow::Error::msg)?,
    })
}

/// Resolves every selected node; the problems of all of them are reported together, before
/// anything is fetched or written.
pub(super) fn resolve_selected(sel: &Selection, ov: &Overrides) -> anyhow::Result<Vec<NodeSpec>> {
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for node in selected_nodes(sel)? {
        match spec::resolve(&sel.profiles_dir, &node, ov) {
            Ok(s) => specs.push(s),
            Err(SpecErrors(e)) => errors.extend(
                e.into_iter()
                    .filter(|e| !errors.contains(e))
                    .collect::<Vec<_>>(),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors(errors).into());
    }
    Ok(specs)
}

/// The images a selection means: one per node, or one fleet's; every node resolved first, and
/// all their problems reported together.
pub(super) fn resolve_jobs(sel: &Selection, ov: &Overrides) -> anyhow::Result<Vec<Job>> {
    Ok(match &sel.fleet {
        Some(name) => vec![Job::Fleet(spec::resolve_fleet(
            &sel.profiles_dir,
            name,
            ov,
        )?)],
        None => resolve_selected(sel, ov)?
            .into_iter()
            .map(|s| Job::Node(Box::new(s)))
            .collect(),
    })
}

/// Runs `piimg plan`: every selected node is resolved first, and all their problems are
/// reported together; then each plan is printed.
pub fn plan(args: &PlanArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let ov = overrides(&args.sources)?;
    let mut jobs = resolve_jobs(&args.selection, &ov)?;
    let mut plans = Vec::new();
    for job in &mut jobs {
        // The same credentials the build will use, so the plan's build id is the build's.
        job.ensure_credentials()?;
        let s = job.sources();
        let manifests = super::render_manifests(s)?;
        plans.push(job.plan(&inputs_for_plan(s, manifests)?)?);
    }
    let write = |out: &mut dyn Write, text: String| {
        out.write_all(text.as_bytes())
            .context("cannot write to stdout")
    };
    if args.json {
        let json = match plans.as_slice() {
            [one] => serde_json::to_string_pretty(one)?,
            many => serde_json::to_string_pretty(many)?,
        };
        write(out, json + "\n")
    } else {
        let text: Vec<String> = plans.iter().map(|p| p.to_string()).collect();
        write(out, text.join("\n"))
    }
}
