//! `piimg inspect`: the report as JSON or as a table.

use crate::cli::InspectArgs;
use std::io::Write;

/// Inspects the image named in `args` and writes the report to `out`.
pub fn inspect(args: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = crate::inspect::inspect(&args.image)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        crate::inspect::render_human(&report, out)?;
    }
    Ok(())
}
