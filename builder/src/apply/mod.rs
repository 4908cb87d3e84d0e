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
mod locate;
mod root;
mod space;

pub use error::ApplyError;
pub use locate::{follow_file, locate, Located, OS_RELEASE};

use crate::fs::ext4::{Access, Ext4};
use crate::plan::{Edit, Plan};
use std::path::Path;

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
    let (boot_edits, root_edits): (Vec<&Edit>, Vec<&Edit>) =
        plan.edits.iter().partition(|e| e.is_boot());

    let (epoch, needed) = {
        let fs = open_root(image, &located, Access::ReadOnly)?;
        base::check(image, plan, &located, &fs)?;
        let epoch = match plan.source_date_epoch {
            Some(t) => i64::try_from(t).unwrap_or(i64::MAX),
            None => fallback_epoch(&fs),
        };
        (epoch, space::needed(image, &fs, &root_edits)?)
    };
    if !boot_edits.is_empty() && located.boot.is_none() {
        return Err(ApplyError::NoBoot {
            image: image.to_path_buf(),
            edit: boot_edits[0].to_string(),
        });
    }
    let grown_by = space::ensure_room(image, &mut located, needed)?;

    let mut changed = boot::apply(image, located.boot.as_ref(), &boot_edits, epoch)?;
    let fs = open_root(image, &located, Access::ReadWrite)?;
    let mut editor = root::RootEditor::new(fs, image, located.root.number, epoch);
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
        image = %image.display(),
        changed = report.changed,
        unchanged = report.unchanged,
        "applied the plan for {}",
        plan.node
    );
    Ok(report)
}

fn open_root(image: &Path, located: &Located, access: Access) -> Result<Ext4, ApplyError> {
    Ext4::open(image, located.root.start, access).map_err(|source| ApplyError::Ext4 {
        image: image.to_path_buf(),
        partition: located.root.number,
        edit: "opening the root filesystem".into(),
        source: Box::new(source),
    })
}

/// Without `SOURCE_DATE_EPOCH`, timestamps come from the base itself: the mtime of its
/// os-release, which the distribution set when it built the image and which no edit
/// changes, so re-applying stamps the same time (never the clock).
fn fallback_epoch(fs: &Ext4) -> i64 {
    OS_RELEASE
        .iter()
        .find_map(|p| follow_file(fs, p))
        .and_then(|p| fs.stat(&p).ok())
        .map_or(0, |s| s.mtime)
}
