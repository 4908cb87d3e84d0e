//! The apply stage: executes a [`Plan`] on an image file (a work copy of the base), rootless,
//! through the partition table, fatfs and libext2fs.
//!
//! Order of work: find the partitions by content ([`locate`]); refuse a base that is not the
//! OS the plan was computed for; estimate the bytes the root edits need and grow the image,
//! root partition and filesystem when short; then the boot edits (one FAT session, only if
//! something changes) and the root edits (one ext4 session). Every edit compares first and
//! writes only a difference, so applying a plan twice leaves the image byte-identical.

mod base;
mod boot;
mod content;
mod error;
mod root;
mod space;
mod target;

pub use crate::locate::{follow_file, locate, Located, OS_RELEASE};
pub use error::ApplyError;

use crate::fs::ext4::{Access, Ext4};
use crate::image::{Device, Overlay};
use crate::plan::{Edit, Plan};
use std::path::Path;
use std::sync::Arc;
use target::Target;

/// What applying a plan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Edits that wrote something.
    pub changed: usize,
    /// Edits that found their result already in place.
    pub unchanged: usize,
    /// Bytes the image (and its root filesystem) grew by to fit the payload.
    pub grown_by: Option<u64>,
}

/// Applies `plan` to `image` (a raw image file the caller owns and may discard on error).
pub fn apply(plan: &Plan, image: &Path) -> Result<ApplyReport, ApplyError> {
    let mut located = locate(image)?;
    let (epoch, needed) = survey(plan, image, &located)?;
    let grown_by = space::ensure_room(image, &mut located, needed)?;
    edit(plan, &Target::File(image), &located, epoch, grown_by)
}

/// Where [`apply_overlay`] left the edited image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// In the overlay.
    Overlay(ApplyReport),
    /// The root filesystem had to grow, which the overlay (fixed to the base's size) cannot:
    /// the overlay was written out to the `work` path and the plan applied there.
    File(ApplyReport),
}

/// Applies `plan` to the node image `overlay` holds, without copying the base: the edits
/// land in the overlay's written blocks. Everything read before the first write is read from
/// the base itself (the overlay still equals it). When the payload does not fit and the image
/// must grow, falls back to a sparse copy at `work` edited in place, as [`apply`] does.
pub fn apply_overlay(
    plan: &Plan,
    overlay: &Arc<Overlay>,
    work: &Path,
) -> Result<Applied, ApplyError> {
    let base = overlay.base_path();
    let located = locate(base)?;
    let (epoch, needed) = survey(plan, base, &located)?;
    if space::free_bytes(base, &located)? < needed {
        tracing::debug!(
            needed,
            "the payload does not fit the base: editing a full copy"
        );
        overlay
            .materialize(work)
            .map_err(|source| ApplyError::Output {
                image: work.to_path_buf(),
                source: Box::new(source),
            })?;
        return apply(plan, work).map(Applied::File);
    }
    let device: Arc<dyn Device> = overlay.clone();
    edit(plan, &Target::Device(device), &located, epoch, None).map(Applied::Overlay)
}

/// Checks the base against the plan and works out the timestamp and the bytes the root edits
/// need; reads only.
fn survey(plan: &Plan, image: &Path, located: &Located) -> Result<(i64, u64), ApplyError> {
    let fs = Target::File(image).open_root(located, Access::ReadOnly)?;
    base::check(image, plan, located, &fs)?;
    let epoch = match plan.source_date_epoch {
        Some(t) => i64::try_from(t).unwrap_or(i64::MAX),
        None => fallback_epoch(&fs),
    };
    let root_edits: Vec<&Edit> = plan.edits.iter().filter(|e| !e.is_boot()).collect();
    let needed = space::needed(image, &fs, &root_edits)?;
    let boot_edit = plan.edits.iter().find(|e| e.is_boot());
    if let (Some(edit), None) = (boot_edit, &located.boot) {
        return Err(ApplyError::NoBoot {
            image: image.to_path_buf(),
            edit: edit.to_string(),
        });
    }
    Ok((epoch, needed))
}

/// The writing half: boot edits (one FAT session), then root edits (one ext4 session).
fn edit(
    plan: &Plan,
    target: &Target<'_>,
    located: &Located,
    epoch: i64,
    grown_by: Option<u64>,
) -> Result<ApplyReport, ApplyError> {
    let (boot_edits, root_edits): (Vec<&Edit>, Vec<&Edit>) =
        plan.edits.iter().partition(|e| e.is_boot());
    let mut changed = boot::apply(target, located.boot.as_ref(), &boot_edits, epoch)?;
    let fs = target.open_root(located, Access::ReadWrite)?;
    let mut editor = root::RootEditor::new(fs, target.name(), located.root.number, epoch);
    for edit in &root_edits {
        let wrote = editor.apply(edit)?;
        tracing::debug!(%edit, wrote, "applied");
        changed += usize::from(wrote);
    }
    editor.close()?;
    let report = ApplyReport {
        changed,
        unchanged: plan.edits.len() - changed,
        grown_by,
    };
    tracing::info!(
        image = %target.name().display(),
        changed = report.changed,
        unchanged = report.unchanged,
        "applied the plan for {}",
        plan.node
    );
    Ok(report)
}

/// Without `SOURCE_DATE_EPOCH`, timestamps come from the base itself: the mtime of its
/// os-release, which the distribution set when it built the image and which no edit
/// changes, so re-applying stamps the same time (never the clock).
pub(crate) fn fallback_epoch(fs: &Ext4) -> i64 {
    OS_RELEASE
        .iter()
        .find_map(|p| follow_file(fs, p))
        .and_then(|p| fs.stat(&p).ok())
        .map_or(0, |s| s.mtime)
}
