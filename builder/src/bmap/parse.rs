//! Reads a `.bmap` (bmaptool format 1.x/2.0 with sha256 ranges) back into a [`Bmap`], checking
//! the file's own checksum first so a damaged or hand-edited map is refused before anything is
//! written to a card.

use super::{BlockRange, Bmap, BMAP_BLOCK_SIZE};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::path::PathBuf;

/// The block map is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{path}: not a usable block map: {what}; use the .bmap written with this image")]
pub struct BmapError {
    /// The map.
    pub path: PathBuf,
    /// What is wrong.
    pub what: String,
}

/// Parses the bmap at `path` (its text in `text`).
pub fn parse_bmap(path: &Path, text: &str) -> Result<Bmap, BmapError> {
    let bad = |what: &str| BmapError {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let block_size: u64 = field(text, "BlockSize")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("no <BlockSize>"))?;
    if block_size != BMAP_BLOCK_SIZE {
        return Err(bad(&format!(
            "block size {block_size} (piimg writes and reads {BMAP_BLOCK_SIZE})"
        )));
    }
    let image_size: u64 = field(text, "ImageSize")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("no <ImageSize>"))?;
    match field(text, "ChecksumType") {
        Some("sha256") => {}
        other => {
            return Err(bad(&format!(
                "checksum type {other:?} (only sha256 is supported)"
            )))
        }
    }
    if let Some(stored) = field(text, "BmapFileChecksum") {
        let zeroed = text.replacen(stored, &"0".repeat(stored.len()), 1);
        let actual = hex::encode(Sha256::digest(zeroed.as_bytes()));
        if actual != stored {
            return Err(bad(
                "its BmapFileChecksum does not match its contents (damaged or edited)",
            ));
        }
    }
    let mut ranges: Vec<BlockRange> = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("<Range"))
    {
        let range = parse_range(line).ok_or_else(|| bad(&format!("unreadable line {line:?}")))?;
        if range.last < range.first
            || range.first * BMAP_BLOCK_SIZE >= image_size
            || ranges.last().is_some_and(|p| range.first <= p.last)
        {
            return Err(bad(&format!(
                "range {}-{} is out of order or outside the image",
                range.first, range.last
            )));
        }
        ranges.push(range);
    }
    Ok(Bmap { image_size, ranges })
}

/// The trimmed text between `<name>` and `</name>`.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(text[start..end].trim())
}

/// `<Range chksum="HEX"> A-B </Range>` or `<Range chksum="HEX"> A </Range>`.
fn parse_range(line: &str) -> Option<BlockRange> {
    let sum_at = line.find("chksum=\"")? + "chksum=\"".len();
    let sum_end = sum_at + line[sum_at..].find('"')?;
    let sha256 = line[sum_at..sum_end].to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let body_at = sum_end + line[sum_end..].find('>')? + 1;
    let body_end = body_at + line[body_at..].find('<')?;
    let body = line[body_at..body_end].trim();
    let (first, last) = match body.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let n = body.parse().ok()?;
            (n, n)
        }
    };
    Some(BlockRange {
        first,
        last,
        sha256,
    })
}
