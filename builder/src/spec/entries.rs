//! Root-filesystem entries from overlays (`common`, the role's, the profile's) and `[[files]]`.

use super::check::{is_rfc1123_label, parse_mode};
use super::overlay::{self, EntryKind, RootEntry};
use super::resolve::Ctx;
use crate::profile::ExtraFile;
use piimg_firstboot::config::Role;

/// Every entry, in the order they are applied (later wins).
pub(super) fn root_entries(ctx: &mut Ctx<'_>, role: Role) -> Vec<RootEntry> {
    let c = &ctx.lc.cluster;
    let overlays_dir = ctx.lc.dir.join(
        c.overlays_dir
            .clone()
            .unwrap_or_else(|| "../overlays".into()),
    );
    let mut out = Vec::new();
    let role_overlay = if role == Role::Server {
        "server"
    } else {
        "agent"
    };
    for name in ["common", role_overlay] {
        let dir = overlays_dir.join(name);
        if dir.is_dir() {
            out.extend(overlay::walk(&dir, &mut ctx.errors));
        }
    }
    for name in ctx.p.overlays.clone().unwrap_or_default() {
        let dir = overlays_dir.join(&name);
        if !is_rfc1123_label(&name) || !dir.is_dir() {
            let (f, k) = ctx.blame("overlays", |l| {
                l.overlays.as_ref().is_some_and(|o| o.contains(&name))
            });
            ctx.err(
                (f, k),
                format!("no overlay folder `{}`", dir.display()),
                "create the folder or remove the name",
            );
            continue;
        }
        out.extend(overlay::walk(&dir, &mut ctx.errors));
    }
    for (i, f) in ctx
        .p
        .files
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if let Some(entry) = extra_file(ctx, i, f) {
            out.push(entry);
        }
    }
    out
}

/// One `[[files]]` entry: absolute path, octal mode, exactly one of content and source.
fn extra_file(ctx: &mut Ctx<'_>, i: usize, f: ExtraFile) -> Option<RootEntry> {
    let (file, key) = ctx.blame("files", |l| {
        l.files
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x.path == f.path))
    });
    let key = format!("{key}[{i}]");
    if !f.path.starts_with('/') || f.path.contains("..") {
        ctx.err(
            (file.clone(), format!("{key}.path")),
            format!("`{}` is not an absolute path", f.path),
            "write the path as in the image, starting with /",
        );
    }
    let mode = match f.mode.as_deref().map(parse_mode) {
        None => 0o644,
        Some(Some(m)) => m,
        Some(None) => {
            ctx.err(
                (file.clone(), format!("{key}.mode")),
                "not an octal mode",
                "write it like \"0644\"",
            );
            0o644
        }
    };
    let kind = match (f.content, f.source) {
        (Some(content), None) => EntryKind::Text { content },
        (None, Some(src)) => {
            let source = ctx.lc.dir.join(src);
            match crate::input_file::sha256_regular(&source) {
                Ok(sha256) => EntryKind::File { sha256, source },
                Err(e) => {
                    ctx.err(
                        (file, format!("{key}.source")),
                        format!("cannot read {}: {e}", source.display()),
                        "give a path relative to the profiles folder",
                    );
                    return None;
                }
            }
        }
        _ => {
            ctx.err(
                (file, key),
                "needs exactly one of `content` and `source`",
                "keep one of the two",
            );
            return None;
        }
    };
    Some(RootEntry {
        path: f.path,
        kind,
        mode,
        uid: f.uid.unwrap_or(0),
        gid: f.gid.unwrap_or(0),
    })
}
