//! `piimg build`: profile → spec → sources → plan → apply onto a copy of the base → outputs.
//!
//! Every selected node is resolved (and every problem reported) before anything is fetched or
//! written. Each node is built in a work folder inside `--out`, so the final rename is on the
//! same filesystem, and the work folder disappears whatever happens: a failed build leaves no
//! file where its outputs go.

use crate::apply::Applied;
use crate::cli::{BuildArgs, OutputFormat};
use crate::image::Overlay;
use crate::output::{self, Format, PublishRequest, Published};
use crate::plan::{compute, Inputs, RenderedManifest, SourceFile};
use crate::source::{self, Cache, SourceSpec};
use crate::spec::NodeSpec;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What one node's build produced, for the summary line.
#[derive(Debug)]
pub struct Built {
    /// The node.
    pub node: String,
    /// The published files.
    pub published: Published,
    /// The build id baked into the image.
    pub build_id: String,
}

/// Runs `piimg build` for every selected node; prints one line per image to `out`.
///
/// Nodes overlap by one step: node N+1 is copied and edited while node N publishes
/// (compression, hashing, sync), so the copy of one and the compression of the other share
/// the machine. Each node still publishes all or nothing; lines come out in node order, and
/// a failure stops the command once the node before it has finished publishing.
pub fn build(args: &BuildArgs, out: &mut dyn Write) -> anyhow::Result<Vec<Built>> {
    let overrides = super::plan::overrides(&args.sources)?;
    let mut specs = super::plan::resolve_selected(&args.selection, &overrides)?;
    let cache = match &args.cache_dir {
        Some(dir) => Cache::new(dir.clone()),
        None => Cache::from_env()?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the output folder", args.out.display()))?;
    let mut built = Vec::new();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut publishing: Option<std::thread::ScopedJoinHandle<'_, anyhow::Result<Built>>> = None;
        let mut finish = |handle: std::thread::ScopedJoinHandle<'_, anyhow::Result<Built>>,
                          out: &mut dyn Write|
         -> anyhow::Result<()> {
            let b = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a publishing thread panicked"))??;
            writeln!(
                out,
                "{}  {}  (build {})",
                b.published.image.display(),
                b.published.image_sha256,
                &b.build_id[..16.min(b.build_id.len())]
            )?;
            built.push(b);
            Ok(())
        };
        for spec in &mut specs {
            let prepared = super::ensure_service_credentials(spec)
                .map_err(anyhow::Error::from)
                .and_then(|()| prepare_node(spec, &cache, args))
                .with_context(|| format!("building {}", spec.node));
            if let Some(handle) = publishing.take() {
                finish(handle, out)?;
            }
            let prepared = prepared?;
            publishing = Some(scope.spawn(move || {
                let node = prepared.node.clone();
                publish_node(prepared, args).with_context(|| format!("building {node}"))
            }));
        }
        if let Some(handle) = publishing.take() {
            finish(handle, out)?;
        }
        Ok(())
    })?;
    Ok(built)
}

/// A node copied from its base and edited, waiting in its work folder to be published.
struct Prepared {
    node: String,
    /// Removed (with the image, unless published) when dropped.
    _work_dir: tempfile::TempDir,
    work: PathBuf,
    /// Where the edited image is: the file at `work`, or an overlay over the base.
    image: NodeImage,
    record: serde_json::Value,
    build_id: String,
    reuse: output::ReuseBase,
    /// Seconds per step so far, for the per-node timing line.
    timings: Timings,
}

/// Where a prepared node's edited image lives.
enum NodeImage {
    /// The file at `Prepared::work`.
    File,
    /// An overlay over the base (compressed output; `Prepared::work` does not exist).
    Overlay(Arc<Overlay>),
}

/// Where one node's build time went, logged when it is published (`-v` is not needed): the
/// first place to look when a build is slower than expected.
#[derive(Debug, Default)]
struct Timings {
    steps: Vec<(&'static str, std::time::Duration)>,
    since: Option<std::time::Instant>,
}

impl Timings {
    fn start() -> Timings {
        Timings {
            steps: Vec::new(),
            since: Some(std::time::Instant::now()),
        }
    }

    /// Ends the step `name`, which began where the previous one ended.
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        if let Some(since) = self.since.replace(now) {
            self.steps.push((name, now - since));
        }
    }

    fn summary(&self) -> String {
        self.steps
            .iter()
            .map(|(name, d)| format!("{name} {:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn prepare_node(spec: &NodeSpec, cache: &Cache, args: &BuildArgs) -> anyhow::Result<Prepared> {
    tracing::info!(node = %spec.node, base = %spec.base.name, "building");
    let mut timings = Timings::start();
    let base_override = spec
        .overrides
        .base
        .as_ref()
        .is_some_and(|b| *b != spec.base.name);
    let base_spec = SourceSpec {
        // `--base PATH` is the user's, relative to where piimg runs; catalogue paths are
        // relative to the profiles folder.
        location: if base_override {
            spec.base.url.clone()
        } else {
            locate(&spec.profiles_dir, &spec.base.url)
        },
        // An explicit --base file is recorded by digest, not held to the catalogue's pin.
        sha256: (!base_override).then(|| spec.base.sha256.clone()),
    };
    let base = source::resolve_base(&base_spec, cache, args.offline)?;
    // Errors about the base name it as the user gave it (`--base c/x.img`, or the catalogue's
    // location), not as piimg's cached or work copy of it.
    let shown = PathBuf::from(&base_spec.location);
    let k3s = match &spec.overrides.k3s_bin {
        Some(p) => fetch(cache, args, p.display().to_string(), None)?,
        None => fetch(
            cache,
            args,
            locate(&spec.profiles_dir, &spec.k3s.artifact.url),
            Some(spec.k3s.artifact.sha256.clone()),
        )?,
    };
    let firstboot = match (&spec.overrides.firstboot_bin, &spec.firstboot_artifact) {
        (Some(p), _) => fetch(cache, args, p.display().to_string(), None)?,
        (None, Some(a)) => fetch(
            cache,
            args,
            locate(&spec.profiles_dir, &a.url),
            Some(a.sha256.clone()),
        )?,
        (None, None) => {
            let path = super::firstboot_bin::own_build(spec.base.arch)?;
            fetch(cache, args, path.display().to_string(), None)?
        }
    };
    let manifests: Vec<RenderedManifest> = super::render_manifests(spec)?;
    let inputs = Inputs {
        k3s_bin: k3s,
        firstboot_bin: firstboot,
        airgap_images: None,
        manifests,
        base_sha256: base.sha256.as_str().to_string(),
    };
    let plan = compute(spec, &inputs);
    timings.lap("sources");

    let work_dir = tempfile::Builder::new()
        .prefix(&format!(".{}.work-", spec.node))
        .tempdir_in(&args.out)
        .with_context(|| format!("{}: cannot create a work folder", args.out.display()))?;
    let work = work_dir.path().join(format!("{}.img", spec.node));
    let image = if format_of(args.format) == Format::Raw {
        // A raw output is a whole file anyway: copy the base and edit the copy in place.
        let method = output::clone_sparse(&base.image, &work)?;
        tracing::debug!(?method, "copied base");
        timings.lap("copy");
        crate::apply::apply(&plan, &work).map_err(|e| e.shown_as(&[&work, &base.image], &shown))?;
        NodeImage::File
    } else {
        // Compressed: edits go to an overlay over the base; no copy of the base at all.
        let delta = work_dir.path().join(format!("{}.delta", spec.node));
        let overlay = Overlay::create(&base.image, &delta, &work)
            .with_context(|| format!("{}: cannot create the overlay", delta.display()))?;
        let overlay = Arc::new(overlay);
        timings.lap("copy");
        let applied = crate::apply::apply_overlay(&plan, &overlay, &work)
            .map_err(|e| e.shown_as(&[&work, &base.image], &shown))?;
        match applied {
            Applied::Overlay(_) => NodeImage::Overlay(overlay),
            Applied::File(_) => NodeImage::File,
        }
    };
    let record = build_record(&work, &image, &plan.build_id)?;
    timings.lap("edits");
    // Compressed output reuses the frames of the chunks the node left as the base had them.
    let reuse = output::ReuseBase {
        image: base.image.clone(),
        frames: output::frames_dir(cache.root(), base.sha256.as_str(), format_of(args.format)),
    };
    Ok(Prepared {
        node: spec.node.clone(),
        _work_dir: work_dir,
        work,
        image,
        record,
        build_id: plan.build_id,
        reuse,
        timings,
    })
}

fn publish_node(mut p: Prepared, args: &BuildArgs) -> anyhow::Result<Built> {
    // Time spent waiting for this thread to start is not the node's.
    p.timings.since = Some(std::time::Instant::now());
    // The work image is ours and already inside --out: a raw output is it, renamed.
    let request = PublishRequest {
        out_dir: &args.out,
        node: &p.node,
        image: &p.work,
        format: format_of(args.format),
        build_json: &p.record,
    };
    let published = match &p.image {
        NodeImage::File => output::publish_moving(&request, Some(&p.reuse))?,
        NodeImage::Overlay(overlay) => output::publish_overlay(&request, overlay, &p.reuse)?,
    };
    p.timings.lap("publish");
    tracing::info!(node = %p.node, "timings: {}", p.timings.summary());
    Ok(Built {
        node: p.node,
        published,
        build_id: p.build_id,
    })
}

/// The sidecar `<node>.build.json` is the record baked into the image, read back from it, so
/// the two can never disagree.
fn build_record(
    work: &Path,
    image: &NodeImage,
    build_id: &str,
) -> anyhow::Result<serde_json::Value> {
    use crate::fs::ext4::{Access, Ext4};
    let fs = match image {
        NodeImage::File => Ext4::open(
            work,
            crate::apply::locate(work)?.root.start,
            Access::ReadOnly,
        )?,
        NodeImage::Overlay(overlay) => {
            // The overlay never grows: the partitions are where the base has them.
            let root = crate::apply::locate(overlay.base_path())?.root.start;
            let device: Arc<dyn crate::image::Device> = overlay.clone();
            Ext4::open_device(device, root, Access::ReadOnly)?
        }
    };
    let bytes = fs.read_file(crate::plan::BUILD_RECORD_PATH)?;
    let record: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the build record of {build_id} is not JSON"))?;
    Ok(record)
}

fn fetch(
    cache: &Cache,
    args: &BuildArgs,
    location: String,
    sha256: Option<String>,
) -> anyhow::Result<SourceFile> {
    let fetched = source::resolve(&SourceSpec { location, sha256 }, cache, args.offline)?;
    Ok(SourceFile {
        path: fetched.path,
        sha256: fetched.sha256.as_str().to_string(),
    })
}

/// Catalogue paths are relative to the profiles folder; URLs stay as they are.
fn locate(profiles_dir: &Path, location: &str) -> String {
    if location.contains("://") || Path::new(location).is_absolute() {
        location.to_string()
    } else {
        profiles_dir.join(location).display().to_string()
    }
}

fn format_of(f: OutputFormat) -> Format {
    match f {
        OutputFormat::Img => Format::Raw,
        OutputFormat::Zst => Format::Zstd,
        OutputFormat::Xz => Format::Xz,
        OutputFormat::Gz => Format::Gzip,
    }
}
