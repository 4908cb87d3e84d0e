//! `piimg inspect`: the report as JSON or as a table.

use crate::cli::InspectArgs;
use std::io::Write;

/// Inspects the image named in `args` and writes the report to `out`.
///
/// Inspect only describes, so an image it could read in part is still a success: what it
/// could not read is marked in the report and said once more on stderr (a script reading the
/// JSON finds it in `unreadable`, a person reading the table sees the warning), exit 0. Only
/// an image whose partition table cannot be read fails.
pub fn inspect(args: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = crate::inspect::inspect(&args.image)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        crate::inspect::render_human(&report, out)?;
    }
    let image = args.image.display();
    if report.root_partition.is_none() {
        tracing::warn!(
            "{image}: no root filesystem found (no ext4 partition with os-release): only the partition table is described"
        );
    }
    if !report.unreadable.is_empty() {
        let what: Vec<&str> = report.unreadable.iter().map(|u| u.path.as_str()).collect();
        tracing::warn!(
            "{image}: {} could not be read: the report is incomplete there",
            what.join(", ")
        );
    }
    Ok(())
}
