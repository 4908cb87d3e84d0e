//! `piimg build`: the command line's adapter over [`crate::build`]. Every selected node is
//! resolved (and every problem reported) before anything is fetched or written; then one line
//! per published image.

use crate::build::{BuildRequest, Built};
use crate::cli::{BuildArgs, OutputFormat};
use crate::output::{Format, ImagerBase};
use crate::source::Cache;
use std::io::Write;

/// Runs `piimg build` for every selected node; prints one line per image to `out`.
pub fn build(args: &BuildArgs, out: &mut dyn Write) -> anyhow::Result<Vec<Built>> {
    let overrides = super::plan::overrides(&args.sources)?;
    let jobs = super::plan::resolve_jobs(&args.selection, &overrides)?;
    let cache = match &args.cache_dir {
        Some(dir) => Cache::new(dir.clone()),
        None => Cache::from_env()?,
    };
    let imager_base = match &args.imager_base_url {
        Some(url) => ImagerBase::url(url)?,
        None => ImagerBase::OutDir,
    };
    let request = BuildRequest {
        jobs,
        out_dir: args.out.clone(),
        format: format_of(args.format),
        offline: args.offline,
        cache,
        imager_base,
    };
    let built = crate::build::build(request, &mut |b| {
        writeln!(
            out,
            "{}  {}  (build {})",
            b.published.image.display(),
            b.published.image_sha256,
            &b.build_id[..16.min(b.build_id.len())]
        )
    })?;
    Ok(built)
}

fn format_of(f: OutputFormat) -> Format {
    match f {
        OutputFormat::Img => Format::Raw,
        OutputFormat::Zst => Format::Zstd,
        OutputFormat::Xz => Format::Xz,
        OutputFormat::Gz => Format::Gzip,
    }
}
