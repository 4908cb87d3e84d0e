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
    for e in out.iter().filter(|e| is_piimg_owned(&e.path)) {
        let (file, key) = ctx.blame("overlays", |_| false);
        let what = match &e.kind {
            EntryKind::File { source, .. } => source.display().to_string(),
            _ => e.path.clone(),
        };
        ctx.err(
            (file, key),
            format!("the overlay entry {what} would replace `{}`, which piimg writes itself (k3s and first boot depend on it)", e.path),
            "remove it from the overlay; a `[[files]]` entry with `replace_piimg_file = true` replaces such a file knowingly",
        );
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

/// Paths in the image that piimg itself writes for k3s and first boot: a profile file or an
/// overlay there would silently replace them (a profile's `/etc/rancher/k3s/config.yaml`
/// dropped the join token and came out 0644). A `[[files]]` entry may still replace one with
/// `replace_piimg_file = true`, knowingly; an overlay cannot.
pub const PIIMG_OWNED: [&str; 10] = [
    "/etc/rancher/k3s/config.yaml",
    "/etc/rancher/node/password",
    "/etc/piimg/node.toml",
    "/etc/piimg/build.json",
    "/usr/local/bin/k3s",
    "/usr/local/sbin/piimg-firstboot",
    "/etc/systemd/system/k3s.service",
    "/etc/systemd/system/k3s-agent.service",
    "/etc/systemd/system/piimg-firstboot.service",
    "/etc/systemd/system/piimg-ssh-keygen.service",
];

/// Whether `path` (normalised: no `.`/`..`, no trailing `/`) is one piimg writes.
pub fn is_piimg_owned(path: &str) -> bool {
    PIIMG_OWNED.contains(&path.trim_end_matches('/'))
}

/// Why `source` is outside `dir` once symlinks and `..` are resolved, if it is: README says
/// sources are relative to the profiles folder, and a profile is often someone else's.
fn outside_problem(dir: &std::path::Path, source: &std::path::Path) -> Option<String> {
    let (Ok(dir), Ok(real)) = (dir.canonicalize(), source.canonicalize()) else {
        return None; // A missing file is reported by the read that follows.
    };
    (!real.starts_with(&dir)).then(|| {
        format!(
            "`{}` is outside the profiles folder {} (it resolves to {})",
            source.display(),
            dir.display(),
            real.display()
        )
    })
}

/// One `[[files]]` entry: absolute path, octal mode, exactly one of content and source.
fn extra_file(ctx: &mut Ctx<'_>, i: usize, f: ExtraFile) -> Option<RootEntry> {
    let (file, key) = ctx.blame("files", |l| {
        l.files
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x.path == f.path))
    });
    let key = format!("{key}[{i}]");
    if !f.path.starts_with('/') {
        ctx.err(
            (file.clone(), format!("{key}.path")),
            format!("`{}` is not an absolute path", f.path),
            "write the path as in the image, starting with /",
        );
    } else if f.path.split('/').any(|c| c == ".." || c == ".") {
        ctx.err(
            (file.clone(), format!("{key}.path")),
            format!("`{}` has `.` or `..` in it", f.path),
            "write the path as it is in the image, without `.` or `..`",
        );
    } else if is_piimg_owned(&f.path) && !f.replace_piimg_file.unwrap_or(false) {
        ctx.err(
            (file.clone(), format!("{key}.path")),
            format!("`{}` is written by piimg itself (k3s and first boot depend on it)", f.path),
            "leave it to piimg, or set `replace_piimg_file = true` on this entry to replace it knowingly",
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
            let source = ctx.lc.dir.join(&src);
            if let Some(problem) = outside_problem(&ctx.lc.dir, &source) {
                ctx.err(
                    (file, format!("{key}.source")),
                    problem,
                    "put the file inside the profiles folder and give its path relative to it",
                );
                return None;
            }
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
