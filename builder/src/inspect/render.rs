//! The human form of an inspect [`Report`]: a few aligned tables, no colour, stable order.

use super::Report;
use std::io::{self, Write};

/// Writes the report for people. The JSON form (`serde_json`) is the one to parse.
pub fn render_human(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "image      {}", report.image.display())?;
    writeln!(
        out,
        "size       {} ({})",
        report.size,
        human_size(report.size)
    )?;
    writeln!(
        out,
        "table      {} (disk id {}, {}-byte sectors)",
        report.table.kind, report.table.disk_id, report.table.sector_size
    )?;
    writeln!(out)?;
    let mut rows = vec![[
        "#".to_string(),
        "start".into(),
        "size".into(),
        "type".into(),
        "partuuid".into(),
        "fs".into(),
        "label".into(),
    ]];
    for p in &report.partitions {
        let ty = match &p.type_name {
            Some(name) if p.type_id.len() <= 2 => format!("{} ({name})", p.type_id),
            Some(name) => name.clone(),
            None => p.type_id.clone(),
        };
        rows.push([
            p.number.to_string(),
            human_size(p.start),
            human_size(p.size),
            ty,
            p.partuuid.clone(),
            p.filesystem.to_string(),
            p.label.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    write_table(out, &rows)?;
    writeln!(out)?;
    match (report.root_partition, &report.os) {
        (Some(root), Some(os)) => writeln!(
            out,
            "os         {} (id {}, version {}, {}) on p{root}",
            os.pretty_name.as_deref().unwrap_or("?"),
            os.id.as_deref().unwrap_or("?"),
            os.version_id.as_deref().unwrap_or("?"),
            os.arch.as_deref().unwrap_or("unknown arch"),
        )?,
        (Some(root), None) => writeln!(out, "os         unknown (no os-release) on p{root}")?,
        (None, _) => writeln!(
            out,
            "os         no root filesystem found (no ext4 partition with os-release{})",
            if report.unreadable.iter().any(|u| is_partition(&u.path)) {
                " that could be read"
            } else {
                ""
            }
        )?,
    }
    match &report.boot {
        Some(boot) => {
            writeln!(out, "cmdline    p{}:{}", boot.partition, boot.cmdline_path)?;
            writeln!(out, "           {}", boot.cmdline)?;
            writeln!(
                out,
                "kernel     {}",
                boot.kernel.as_deref().unwrap_or("firmware default")
            )?;
        }
        None => match boot_unread(report) {
            Some(path) => writeln!(
                out,
                "cmdline    unreadable: {path} could not be read (see `unreadable` below)"
            )?,
            None => writeln!(out, "cmdline    none on the boot partition (GRUB or other)")?,
        },
    }
    writeln!(out, "fstab")?;
    let mut rows = Vec::new();
    for e in &report.fstab {
        rows.push([
            e.spec.clone(),
            e.file.clone(),
            e.vfstype.clone(),
            e.options.clone(),
            e.freq.clone(),
            e.passno.clone(),
        ]);
    }
    let fstab_unread = report.unreadable.iter().any(|u| u.path == "/etc/fstab");
    if report.root_partition.is_none() {
        writeln!(out, "  (no root filesystem)")?;
    } else if fstab_unread {
        writeln!(out, "  (could not be read: see `unreadable` below)")?;
    } else if rows.is_empty() {
        writeln!(out, "  (empty)")?;
    } else {
        write_table_indented(out, &rows, "  ")?;
    }
    match report.swap_state {
        "unknown" => writeln!(out, "swap       unknown (no root filesystem)")?,
        "unreadable" => writeln!(
            out,
            "swap       unreadable: files that decide it could not be read (see `unreadable` below)"
        )?,
        _ => {}
    }
    if report.swap.is_empty() {
        if report.swap_state == "none" {
            writeln!(out, "swap       none")?;
        }
    } else {
        for (i, s) in report.swap.iter().enumerate() {
            let head = if i == 0 { "swap      " } else { "          " };
            let state = if s.active { "ACTIVE" } else { "off" };
            writeln!(out, "{head} {} {state}: {}", s.kind, s.detail)?;
        }
    }
    match &report.piimg {
        Some(record) => {
            let field = |k: &str| {
                record
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string()
            };
            let members: Vec<&str> = record
                .get("members")
                .and_then(|m| m.as_array())
                .map(|m| m.iter().filter_map(|m| m.get("node")?.as_str()).collect())
                .unwrap_or_default();
            let target = if members.is_empty() {
                format!("node {}", field("node"))
            } else {
                format!(
                    "fleet {} (nodes {}: each board takes its own at first boot)",
                    field("fleet"),
                    members.join(", ")
                )
            };
            writeln!(
                out,
                "piimg      built by piimg {} for {target} (build id {})",
                field("piimg_version"),
                field("build_id")
            )?;
        }
        None if report.root_partition.is_none() => {
            writeln!(out, "piimg      unknown (no root filesystem)")?
        }
        None if report
            .unreadable
            .iter()
            .any(|u| u.path == crate::plan::BUILD_RECORD_PATH) =>
        {
            writeln!(
                out,
                "piimg      unknown: the build record could not be read (see `unreadable` below)"
            )?
        }
        None => writeln!(out, "piimg      not built by piimg")?,
    }
    for (i, u) in report.unreadable.iter().enumerate() {
        let head = if i == 0 { "unreadable" } else { "          " };
        writeln!(out, "{head} {}: {}", u.path, u.error)?;
    }
    Ok(())
}

/// A whole partition (`p2`) rather than a file in one.
fn is_partition(path: &str) -> bool {
    path.strip_prefix('p')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The unreadable entry that hides the boot command line: a FAT partition, or a file of one
/// (`p1:cmdline.txt`).
fn boot_unread(report: &super::Report) -> Option<&str> {
    report
        .unreadable
        .iter()
        .map(|u| u.path.as_str())
        .find(|path| {
            let part = path.split(':').next().unwrap_or(path);
            let vfat = report.partitions.iter().any(|p| {
                format!("p{}", p.number) == part && matches!(p.filesystem, "vfat" | "unreadable")
            });
            is_partition(part) && vfat
        })
}

fn write_table<const N: usize>(out: &mut dyn Write, rows: &[[String; N]]) -> io::Result<()> {
    write_table_indented(out, rows, "")
}

fn write_table_indented<const N: usize>(
    out: &mut dyn Write,
    rows: &[[String; N]],
    indent: &str,
) -> io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{indent}{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// Binary units, one decimal: what people compare with `lsblk` and `fdisk -l`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_lsblk() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(8 << 20), "8 MiB");
        assert_eq!(human_size(1536 << 20), "1.5 GiB");
    }
}
