//! One node's build: prepare (sources → plan → a copy or overlay of the base, edited) and
//! publish (the outputs, all or nothing). Split in two so the next node can be prepared while
//! this one publishes.

use super::error::NodeError;
use super::timings::Timings;
use super::{BuildRequest, Job};
use crate::apply::Applied;
use crate::image::Overlay;
use crate::output::{self, Format, PublishRequest, Published};
use crate::plan::{Inputs, RenderedManifest, SourceFile};
use crate::source::{self, SourceSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What one node's build produced.
#[derive(Debug)]
pub struct Built {
    /// The node.
    pub node: String,
    /// The published files.
    pub published: Published,
    /// The build id baked into the image.
    pub build_id: String,
    /// What Raspberry Pi Imager's `os_list.json` says of it.
    pub imager: output::ImagerImage,
}

/// A node copied from its base and edited, waiting in its work folder to be published.
pub(super) struct Prepared {
    pub(super) node: String,
    /// Removed (with the image, unless published) when dropped.
    _work_dir: tempfile::TempDir,
    /// Held while the work folder is in use (see `leftovers`); dropped after it.
    _work_lock: crate::leftovers::EntryLock,
    work: PathBuf,
    /// Where the edited image is: the file at `work`, or an overlay over the base.
    image: NodeImage,
    record: serde_json::Value,
    build_id: String,
    /// A fleet image's members (empty for a node's image).
    members: Vec<String>,
    arch: crate::profile::Arch,
    base_name: String,
    /// SOURCE_DATE_EPOCH, else the base's own time (what the image's timestamps are).
    release_epoch: i64,
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

/// Fetches the node's sources, computes its plan and applies it to a copy (raw output) or an
/// overlay (compressed output) of the base, in a work folder inside the output folder (so the
/// final rename stays on one filesystem, and the folder goes whatever happens).
pub(super) fn prepare(job: &Job, req: &BuildRequest) -> Result<Prepared, NodeError> {
    let spec = job.sources();
    let name = job.name();
    tracing::info!(image = %name, base = %spec.base.name, "building");
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
    let base = source::resolve_base(&base_spec, &req.cache, req.offline)?;
    // Errors about the base name it as the user gave it (`--base c/x.img`, or the catalogue's
    // location), not as piimg's cached or work copy of it.
    let shown = PathBuf::from(&base_spec.location);
    let fetch = |location: String, sha256: Option<String>| fetch(req, location, sha256);
    let k3s = match &spec.overrides.k3s_bin {
        Some(p) => fetch(p.display().to_string(), None)?,
        None => fetch(
            locate(&spec.profiles_dir, &spec.k3s.artifact.url),
            Some(spec.k3s.artifact.sha256.clone()),
        )?,
    };
    let firstboot = match (&spec.overrides.firstboot_bin, &spec.firstboot_artifact) {
        (Some(p), _) => fetch(p.display().to_string(), None)?,
        (None, Some(a)) => fetch(locate(&spec.profiles_dir, &a.url), Some(a.sha256.clone()))?,
        (None, None) => {
            let path = super::firstboot_bin::own_build(spec.base.arch)?;
            fetch(path.display().to_string(), None)?
        }
    };
    let manifests: Vec<RenderedManifest> = super::manifests::render_manifests(spec)?;
    let inputs = Inputs {
        k3s_bin: k3s,
        firstboot_bin: firstboot,
        airgap_images: None,
        manifests,
        base_sha256: base.sha256.as_str().to_string(),
    };
    let plan = job.plan(&inputs)?;
    timings.lap("sources");

    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{name}.work-");
    builder.prefix(&prefix);
    let (work_dir, work_lock) =
        crate::leftovers::temp_dir(&builder, &req.out_dir).map_err(|source| NodeError::Work {
            path: req.out_dir.clone(),
            what: "a work folder",
            source,
        })?;
    let work = work_dir.path().join(format!("{name}.img"));
    let image = if req.format == Format::Raw {
        // A raw output is a whole file anyway: copy the base and edit the copy in place.
        let method = crate::image::clone_sparse(&base.image, &work)?;
        tracing::debug!(?method, "copied base");
        timings.lap("copy");
        crate::apply::apply(&plan, &work)
            .map_err(|e| refused(req, &base, e.shown_as(&[&work, &base.image], &shown)))?;
        NodeImage::File
    } else {
        // Compressed: edits go to an overlay over the base; no copy of the base at all.
        let delta = work_dir.path().join(format!("{name}.delta"));
        let overlay =
            Overlay::create(&base.image, &delta, &work).map_err(|source| NodeError::Work {
                path: delta.clone(),
                what: "the overlay",
                source,
            })?;
        let overlay = Arc::new(overlay);
        timings.lap("copy");
        let applied = crate::apply::apply_overlay(&plan, &overlay, &work)
            .map_err(|e| refused(req, &base, e.shown_as(&[&work, &base.image], &shown)))?;
        match applied {
            Applied::Overlay(_) => NodeImage::Overlay(overlay),
            Applied::File(_) => NodeImage::File,
        }
    };
    let (record, base_epoch) = build_record(&work, &image, &plan.build_id)?;
    let release_epoch = spec
        .overrides
        .source_date_epoch
        .and_then(|e| i64::try_from(e).ok())
        .unwrap_or(base_epoch);
    timings.lap("edits");
    // Compressed output reuses the frames of the chunks the node left as the base had them.
    let reuse = output::ReuseBase {
        image: base.image.clone(),
        frames: output::frames_dir(req.cache.root(), base.sha256.as_str(), req.format),
    };
    Ok(Prepared {
        node: name.to_string(),
        _work_dir: work_dir,
        _work_lock: work_lock,
        work,
        image,
        record,
        build_id: plan.build_id,
        members: plan.members.iter().map(|m| m.node.clone()).collect(),
        arch: spec.base.arch,
        base_name: spec.base.name.clone(),
        release_epoch,
        reuse,
        timings,
    })
}

/// Passes an apply error on, first removing the base from the cache when the error refuses
/// the base itself (a damaged boot FAT, no root filesystem): a later build fetches it anew
/// rather than finding the refused one for ever (issue 15.10).
fn refused(
    req: &BuildRequest,
    base: &source::BaseImage,
    e: crate::apply::ApplyError,
) -> crate::apply::ApplyError {
    if e.rejects_base() {
        req.cache.evict_base(&base.sha256);
    }
    e
}

/// Publishes a prepared node: image, `.sha256`, `.bmap`, `.build.json`, all or nothing.
pub(super) fn publish(mut p: Prepared, req: &BuildRequest) -> Result<Built, NodeError> {
    p.timings.resume();
    // The work image is ours and already inside the output folder: a raw output is it, renamed.
    let request = PublishRequest {
        out_dir: &req.out_dir,
        node: &p.node,
        image: &p.work,
        format: req.format,
        build_json: &p.record,
    };
    let published = match &p.image {
        NodeImage::File => output::publish_moving(&request, Some(&p.reuse))?,
        NodeImage::Overlay(overlay) => output::publish_overlay(&request, overlay, &p.reuse)?,
    };
    p.timings.lap("publish");
    // Raspberry Pi Imager checks the raw image's size and SHA-256: a raw output's are known,
    // a compressed one is read back (every frame decompressed, as Imager will).
    let (extract_size, extract_sha256) =
        output::raw_digest(&published.image, req.format, &published.image_sha256)?;
    p.timings.lap("raw digest");
    let imager = output::ImagerImage {
        node: p.node.clone(),
        image: published.image.clone(),
        bmap: published.bmap.clone(),
        download_sha256: published.image_sha256.clone(),
        extract_size,
        extract_sha256,
        arch: p.arch,
        base: p.base_name.clone(),
        build_id: p.build_id.clone(),
        release_epoch: p.release_epoch,
        members: p.members.clone(),
    };
    tracing::info!(node = %p.node, "timings: {}", p.timings.summary());
    Ok(Built {
        node: p.node,
        published,
        build_id: p.build_id,
        imager,
    })
}

/// The sidecar `<node>.build.json` is the record baked into the image, read back from it, so
/// the two can never disagree; with it, the base's own time (the timestamps the image got
/// without SOURCE_DATE_EPOCH).
fn build_record(
    work: &Path,
    image: &NodeImage,
    build_id: &str,
) -> Result<(serde_json::Value, i64), NodeError> {
    use crate::fs::ext4::{Access, Ext4};
    let fs = match image {
        NodeImage::File => Ext4::open(
            work,
            crate::locate::locate(work)?.root.start,
            Access::ReadOnly,
        )?,
        NodeImage::Overlay(overlay) => {
            // The overlay never grows: the partitions are where the base has them.
            let root = crate::locate::locate(overlay.base_path())?.root.start;
            let device: Arc<dyn crate::image::Device> = overlay.clone();
            Ext4::open_device(device, root, Access::ReadOnly)?
        }
    };
    let bytes = fs.read_file(crate::plan::BUILD_RECORD_PATH)?;
    let record = serde_json::from_slice(&bytes).map_err(|source| NodeError::Record {
        build_id: build_id.to_string(),
        source,
    })?;
    Ok((record, crate::apply::fallback_epoch(&fs)))
}

fn fetch(
    req: &BuildRequest,
    location: String,
    sha256: Option<String>,
) -> Result<SourceFile, NodeError> {
    let fetched = source::resolve(&SourceSpec { location, sha256 }, &req.cache, req.offline)?;
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
