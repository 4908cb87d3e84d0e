//! bmaptool's block map (format 2.0) of a sparse image, built from its data extents so holes
//! are never read. `bmaptool copy` and `piimg flash` write only the mapped blocks and check
//! each range against its SHA-256.
//!
//! Written by the output stage, read back by `flash` ([`parse_bmap`]); the format lives here,
//! below both.
//!
//! Ranges are split at [`CHUNK_SIZE`] boundaries (bmaptool accepts any ranges): a range then
//! lies in one compression chunk, so compressed output hashes it from the chunk's bytes it
//! already holds, and a chunk left as the base had it takes its hashes from the base's cache.

mod parse;

pub use parse::{parse_bmap, BmapError};

use crate::image::{
    chunks, extents_of, read_chunk, read_error, Chunk, Extent, FileError, CHUNK_SIZE,
};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};

/// bmaptool's block size; every image we write is 4 KiB aligned.
pub const BMAP_BLOCK_SIZE: u64 = 4096;

/// A run of mapped blocks, inclusive, with the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRange {
    /// First block.
    pub first: u64,
    /// Last block (inclusive).
    pub last: u64,
    /// SHA-256 of the bytes of these blocks (the last block cut at the image end).
    pub sha256: String,
}

/// The block map of one image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bmap {
    /// Image size in bytes.
    pub image_size: u64,
    /// Mapped ranges, in order, not touching each other.
    pub ranges: Vec<BlockRange>,
}

impl Bmap {
    /// Maps the image at `path`: reads only its data extents.
    pub fn of_image(path: &Path) -> Result<Bmap, FileError> {
        Self::scan(path, false).map(|(bmap, _)| bmap)
    }

    /// Maps the image and also returns the SHA-256 of the whole image, from the same single
    /// read of its data (holes are hashed as zeros without being read): publishing a raw
    /// image needs both, and reading a multi-GB image twice would double the cost. The
    /// whole-image hash runs on its own thread, fed the chunks this one reads and hashes.
    pub fn of_image_with_sha256(path: &Path) -> Result<(Bmap, String), FileError> {
        let (bmap, whole) = Self::scan(path, true)?;
        Ok((bmap, whole.unwrap_or_default()))
    }

    fn scan(path: &Path, whole: bool) -> Result<(Bmap, Option<String>), FileError> {
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        let size = file.metadata().map_err(|e| read_error(path, e))?.len();
        let extents = extents_of(&file).map_err(|e| read_error(path, e))?;
        let mut ranges = Vec::new();
        let mut map_chunk = |chunk: Chunk, buf: &mut Vec<u8>| -> io::Result<bool> {
            let map = chunk_ranges(&extents, chunk);
            if map.is_empty() {
                return Ok(false);
            }
            read_chunk(&file, &extents, chunk, buf)?;
            ranges.extend(hash_ranges(chunk, buf, &map));
            Ok(true)
        };
        let digest = if whole {
            Some(
                with_whole_hasher(|feed| {
                    for chunk in chunks(size) {
                        let mut buf = feed.spare();
                        if map_chunk(chunk, &mut buf)? {
                            feed.data(buf)?;
                        } else {
                            feed.zeros(chunk.len as usize)?;
                        }
                    }
                    Ok(())
                })
                .map_err(|e| read_error(path, e))?,
            )
        } else {
            let mut buf = Vec::new();
            for chunk in chunks(size) {
                map_chunk(chunk, &mut buf).map_err(|e| read_error(path, e))?;
            }
            None
        };
        Ok((
            Bmap {
                image_size: size,
                ranges,
            },
            digest,
        ))
    }

    /// Number of blocks of the image (the last may be partial).
    pub fn blocks_count(&self) -> u64 {
        self.image_size.div_ceil(BMAP_BLOCK_SIZE)
    }

    /// Number of mapped blocks.
    pub fn mapped_blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.last - r.first + 1).sum()
    }

    /// The XML text, with `BmapFileChecksum` computed the way bmaptool checks it: the SHA-256
    /// of the whole file with that field's value written as 64 ASCII zeros.
    pub fn to_xml(&self) -> String {
        let placeholder = "0".repeat(64);
        let text = self.render(&placeholder);
        let checksum = hex::encode(Sha256::digest(text.as_bytes()));
        text.replacen(
            &format!("<BmapFileChecksum> {placeholder} </BmapFileChecksum>"),
            &format!("<BmapFileChecksum> {checksum} </BmapFileChecksum>"),
            1,
        )
    }

    fn render(&self, checksum: &str) -> String {
        let mapped = self.mapped_blocks();
        let percent = if self.blocks_count() == 0 {
            0.0
        } else {
            mapped as f64 * 100.0 / self.blocks_count() as f64
        };
        let mut xml = String::new();
        xml.push_str("<?xml version=\"1.0\" ?>\n");
        xml.push_str(
            "<!-- Block map of a piimg node image: the blocks that hold data. Only these\n",
        );
        xml.push_str("     need writing to the target device (bmaptool copy, piimg flash). -->\n");
        xml.push_str("<bmap version=\"2.0\">\n");
        let _ = writeln!(
            xml,
            "    <!-- Image size in bytes: {} -->",
            human(self.image_size)
        );
        let _ = writeln!(xml, "    <ImageSize> {} </ImageSize>\n", self.image_size);
        xml.push_str("    <!-- Size of a block in bytes -->\n");
        let _ = writeln!(xml, "    <BlockSize> {BMAP_BLOCK_SIZE} </BlockSize>\n");
        xml.push_str("    <!-- Count of blocks in the image file -->\n");
        let _ = writeln!(
            xml,
            "    <BlocksCount> {} </BlocksCount>\n",
            self.blocks_count()
        );
        let _ = writeln!(
            xml,
            "    <!-- Count of mapped blocks: {} or {percent:.1}% -->",
            human(mapped * BMAP_BLOCK_SIZE)
        );
        let _ = writeln!(
            xml,
            "    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n"
        );
        xml.push_str("    <!-- Type of checksum used in this file -->\n");
        xml.push_str("    <ChecksumType> sha256 </ChecksumType>\n\n");
        xml.push_str(
            "    <!-- The checksum of this bmap file. When it is calculated, the value of\n",
        );
        xml.push_str("         the checksum has be zero (all ASCII \"0\" symbols).  -->\n");
        let _ = writeln!(
            xml,
            "    <BmapFileChecksum> {checksum} </BmapFileChecksum>\n"
        );
        xml.push_str("    <!-- The block map: ranges of mapped blocks with their checksums. -->\n");
        xml.push_str("    <BlockMap>\n");
        for r in &self.ranges {
            if r.first == r.last {
                let _ = writeln!(
                    xml,
                    "        <Range chksum=\"{}\"> {} </Range>",
                    r.sha256, r.first
                );
            } else {
                let _ = writeln!(
                    xml,
                    "        <Range chksum=\"{}\"> {}-{} </Range>",
                    r.sha256, r.first, r.last
                );
            }
        }
        xml.push_str("    </BlockMap>\n");
        xml.push_str("</bmap>\n");
        xml
    }
}

/// The mapped block ranges (inclusive) of one chunk: its data extents rounded out to whole
/// blocks and merged where they touch. Chunks start on block boundaries, so these are the
/// image's ranges cut at chunk boundaries.
pub(crate) fn chunk_ranges(extents: &[Extent], chunk: Chunk) -> Vec<(u64, u64)> {
    let end = chunk.offset + chunk.len;
    let first = extents.partition_point(|e| e.end() <= chunk.offset);
    let clipped = extents[first..]
        .iter()
        .take_while(|e| e.offset < end)
        .map(|e| {
            let from = e.offset.max(chunk.offset);
            Extent {
                offset: from,
                len: e.end().min(end).saturating_sub(from),
            }
        });
    block_ranges(clipped)
}

/// The SHA-256 of each range of `chunk`, from the chunk's bytes (`data`, holes as zeros).
pub(crate) fn hash_ranges(chunk: Chunk, data: &[u8], ranges: &[(u64, u64)]) -> Vec<BlockRange> {
    let end = chunk.offset + data.len() as u64;
    ranges
        .iter()
        .map(|&(first, last)| {
            let from = (first * BMAP_BLOCK_SIZE - chunk.offset) as usize;
            let to = (((last + 1) * BMAP_BLOCK_SIZE).min(end) - chunk.offset) as usize;
            BlockRange {
                first,
                last,
                sha256: hex::encode(Sha256::digest(&data[from..to])),
            }
        })
        .collect()
}

/// Whether a cached range list could belong to `chunk` (validation of the hash cache).
pub(crate) fn ranges_fit(chunk: Chunk, ranges: &[BlockRange]) -> bool {
    let lo = chunk.offset / BMAP_BLOCK_SIZE;
    let hi = (chunk.offset + chunk.len).div_ceil(BMAP_BLOCK_SIZE);
    let mut at = lo;
    ranges.iter().all(|r| {
        let ok = r.first >= at && r.first <= r.last && r.last < hi;
        at = r.last + 2;
        ok
    })
}

/// Block ranges (inclusive) covering the extents, rounded out to whole blocks and merged
/// where they touch.
fn block_ranges(extents: impl IntoIterator<Item = Extent>) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for e in extents.into_iter().filter(|e| e.len > 0) {
        let first = e.offset / BMAP_BLOCK_SIZE;
        let last = (e.end() - 1) / BMAP_BLOCK_SIZE;
        match ranges.last_mut() {
            Some(prev) if first <= prev.1 + 1 => prev.1 = prev.1.max(last),
            _ => ranges.push((first, last)),
        }
    }
    ranges
}

/// What the whole-image hasher is fed, in image order.
enum Piece {
    Data(Vec<u8>),
    Zeros(usize),
}

/// The reading side of [`with_whole_hasher`].
struct Feed {
    to_hasher: SyncSender<Piece>,
    recycled: Receiver<Vec<u8>>,
}

impl Feed {
    /// A buffer the hasher is done with, to read the next chunk into (no allocation per
    /// chunk).
    fn spare(&self) -> Vec<u8> {
        self.recycled.try_recv().unwrap_or_default()
    }

    fn data(&self, buf: Vec<u8>) -> io::Result<()> {
        self.send(Piece::Data(buf))
    }

    fn zeros(&self, len: usize) -> io::Result<()> {
        self.send(Piece::Zeros(len))
    }

    fn send(&self, piece: Piece) -> io::Result<()> {
        self.to_hasher
            .send(piece)
            .map_err(|_| io::Error::other("the image hashing thread stopped"))
    }
}

/// Runs `read` (which feeds the image's bytes in order) while a second thread hashes them:
/// the whole-image SHA-256 and the range hashes then cost one read and run side by side.
/// At most a few chunks are in flight, so memory stays bounded.
fn with_whole_hasher(read: impl FnOnce(&Feed) -> io::Result<()>) -> io::Result<String> {
    let (to_hasher, pieces) = sync_channel::<Piece>(2);
    let (give_back, recycled) = channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let zeros = vec![0u8; CHUNK_SIZE as usize];
            let mut whole = Sha256::new();
            for piece in pieces {
                match piece {
                    Piece::Data(buf) => {
                        whole.update(&buf);
                        let _ = give_back.send(buf);
                    }
                    Piece::Zeros(mut len) => {
                        while len > 0 {
                            let n = len.min(zeros.len());
                            whole.update(&zeros[..n]);
                            len -= n;
                        }
                    }
                }
            }
            hex::encode(whole.finalize())
        });
        let feed = Feed {
            to_hasher,
            recycled,
        };
        let result = read(&feed);
        drop(feed);
        let digest = hasher
            .join()
            .map_err(|_| io::Error::other("the image hashing thread panicked"))?;
        result.map(|()| digest)
    })
}

/// bmaptool's human size: "1.5 MiB".
fn human(size: u64) -> String {
    if size < 512 {
        return format!("{size} bytes");
    }
    let mut value = size as f64;
    for unit in ["KiB", "MiB", "GiB", "TiB"] {
        value /= 1024.0;
        if value < 1024.0 {
            return format!("{value:.1} {unit}");
        }
    }
    format!("{value:.1} PiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranges per chunk are the image's merged ranges cut at chunk boundaries.
    #[test]
    fn chunk_ranges_cut_the_image_ranges_at_chunk_boundaries() {
        let extents = [
            Extent {
                offset: 0,
                len: 100,
            },
            Extent {
                offset: 4096,
                len: 4096,
            },
            Extent {
                offset: CHUNK_SIZE - 8192,
                len: 3 * CHUNK_SIZE,
            },
            Extent {
                offset: 5 * CHUNK_SIZE + 10,
                len: 5000,
            },
        ];
        let size = 6 * CHUNK_SIZE - 1000;
        let per_chunk: Vec<(u64, u64)> = chunks(size)
            .flat_map(|c| chunk_ranges(&extents, c))
            .collect();
        let b = CHUNK_SIZE / BMAP_BLOCK_SIZE;
        let mut cut = Vec::new();
        for (first, last) in block_ranges(extents) {
            let mut f = first;
            while f <= last {
                let l = last.min((f / b + 1) * b - 1);
                cut.push((f, l));
                f = l + 1;
            }
        }
        assert_eq!(per_chunk, cut);
        assert_eq!(per_chunk[0], (0, 1));
    }
}
