//! Compressed output that reuses the base's frames. A node image is its base plus a few
//! changed chunks; since every chunk is compressed on its own and deterministically, the frame
//! of a chunk whose bytes equal the base's is the base's frame. The base's frames are cached
//! per (base digest, format, level, chunk size) the first time a node of that base is
//! compressed (chunks equal to the base's are compressed once for both), and later builds
//! compress only the chunks that differ and splice the cached frames for the rest. The output
//! is byte for byte what [`super::compress_image`] writes. A node edited in a copy-on-write
//! overlay ([`compress_overlay_to`]) says which chunks it wrote, so nothing is read or
//! compared to find them; a node given as a file is compared with the base chunk by chunk.
//!
//! The `.bmap` comes out of the same pass: its ranges are cut at chunk boundaries, a changed
//! chunk's ranges are hashed from the bytes in memory, and an unchanged chunk's are the base's,
//! cached beside its frames (`ranges`, written and validated with them). A missing or damaged
//! hash cache only means hashing again.

use super::compress::compress_image_to;
use super::compress::{compress_chunk, Format, ZeroFrames};
use super::error::{read_error, write_error, OutputError};
use super::pool::map_in_order;
use crate::bmap::{chunk_ranges, hash_ranges, ranges_fit, BlockRange, Bmap, BMAP_BLOCK_SIZE};
use crate::image::{chunks, extents_of, read_chunk, Chunk, Extent, CHUNK_SIZE};
use crate::image::{Device, Overlay};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The base a node image was started from, and where its frames are cached.
#[derive(Debug, Clone)]
pub struct ReuseBase {
    /// The raw base image (read only).
    pub image: PathBuf,
    /// The frame cache folder of this base and format (see [`frames_dir`]).
    pub frames: PathBuf,
}

/// What a compression with reuse did; the counts show whether the cache worked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompressStats {
    /// The block map of the node image (ranges cut at chunk boundaries), made in the same
    /// pass: the same as [`Bmap::of_image`] of the node.
    pub bmap: Bmap,
    /// Chunks whose range hashes came from the base's cache instead of being computed.
    pub hashes_reused: u64,
    /// Compressed bytes written.
    pub written: u64,
    /// Chunks whose cached base frame was spliced in.
    pub reused: u64,
    /// Chunks compressed for the node.
    pub compressed: u64,
}

/// The frame cache folder for a base: under `cache_root/frames/`, named by everything that
/// changes a frame's bytes, so a different level or chunk size never reuses a stale frame.
pub fn frames_dir(cache_root: &Path, base_sha256: &str, format: Format) -> PathBuf {
    cache_root.join("frames").join(format!(
        "{base_sha256}-{}-l{}-c{}",
        format.extension(),
        format.level(),
        CHUNK_SIZE
    ))
}

const FRAMES_FILE: &str = "frames";
const INDEX_FILE: &str = "index";
/// The base's `.bmap` ranges with their SHA-256, one `FIRST LAST SHA256` line per range and
/// an `end COUNT` line, so a cut-short file is seen as damaged.
const RANGES_FILE: &str = "ranges";

/// The base's range hashes per chunk, from the cache; `None` when absent or damaged.
struct CachedHashes {
    per_chunk: Vec<Vec<BlockRange>>,
}

impl CachedHashes {
    fn load(dir: &Path, all: &[Chunk]) -> Option<CachedHashes> {
        let text = std::fs::read_to_string(dir.join(RANGES_FILE)).ok()?;
        let mut per_chunk: Vec<Vec<BlockRange>> = vec![Vec::new(); all.len()];
        let mut count = 0usize;
        let mut ended = false;
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["end", n] if !ended => {
                    ended = n.parse::<usize>().ok()? == count;
                    if !ended {
                        return None;
                    }
                }
                [first, last, sha256] if !ended => {
                    let range = BlockRange {
                        first: first.parse().ok()?,
                        last: last.parse().ok()?,
                        sha256: sha256.to_string(),
                    };
                    let hex_ok = range.sha256.len() == 64
                        && range
                            .sha256
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                    let chunk = (range.first * BMAP_BLOCK_SIZE / CHUNK_SIZE) as usize;
                    if !hex_ok || chunk >= all.len() {
                        return None;
                    }
                    per_chunk[chunk].push(range);
                    count += 1;
                }
                _ => return None,
            }
        }
        let fits = all
            .iter()
            .zip(&per_chunk)
            .all(|(chunk, ranges)| ranges_fit(*chunk, ranges));
        (ended && fits).then_some(CachedHashes { per_chunk })
    }

    /// The cached hashes of `chunk` if its ranges are `ranges` (a node may map an unchanged
    /// chunk differently, e.g. zeros written over a hole).
    fn of(&self, chunk: Chunk, ranges: &[(u64, u64)]) -> Option<Vec<BlockRange>> {
        let cached = self.per_chunk.get(chunk.index as usize)?;
        let same = cached.len() == ranges.len()
            && cached
                .iter()
                .zip(ranges)
                .all(|(c, &(first, last))| c.first == first && c.last == last);
        same.then(|| cached.clone())
    }
}

/// The cached frames of a base: the compressed base itself, and where each frame starts.
struct CachedFrames {
    file: File,
    /// `chunks + 1` offsets; frame `i` is `offsets[i]..offsets[i + 1]`.
    offsets: Vec<u64>,
}

impl CachedFrames {
    /// Loads the cache if it is complete and fits an image of `chunk_count` chunks; anything
    /// else (absent, partial, another size) counts as no cache.
    fn load(dir: &Path, chunk_count: usize) -> Option<CachedFrames> {
        let index = std::fs::read_to_string(dir.join(INDEX_FILE)).ok()?;
        let offsets: Vec<u64> = index
            .lines()
            .map(|l| l.trim().parse().ok())
            .collect::<Option<_>>()?;
        let file = File::open(dir.join(FRAMES_FILE)).ok()?;
        let len = file.metadata().ok()?.len();
        let ordered = offsets.windows(2).all(|w| w[0] <= w[1]);
        (offsets.len() == chunk_count + 1 && offsets.last() == Some(&len) && ordered)
            .then_some(CachedFrames { file, offsets })
    }

    fn frame(&self, index: u64) -> io::Result<Vec<u8>> {
        let i = index as usize;
        let (from, to) = (self.offsets[i], self.offsets[i + 1]);
        let mut bytes = vec![0u8; (to - from) as usize];
        self.file.read_exact_at(&mut bytes, from)?;
        Ok(bytes)
    }
}

/// Writes a new frame cache into a temporary folder beside its final place, renamed into
/// place only once complete, so a crash never leaves a partial cache that looks whole.
struct CacheWriter {
    temp: tempfile::TempDir,
    /// Held while the folder is written: the next run removes it only once this one is gone.
    _lock: crate::leftovers::EntryLock,
    out: BufWriter<File>,
    offsets: Vec<u64>,
    ranges: String,
    range_count: usize,
}

impl CacheWriter {
    fn create(dir: &Path) -> io::Result<CacheWriter> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".frames-");
        let (temp, lock) = crate::leftovers::temp_dir(&builder, parent)?;
        let out = BufWriter::with_capacity(1 << 20, File::create(temp.path().join(FRAMES_FILE))?);
        Ok(CacheWriter {
            temp,
            _lock: lock,
            out,
            offsets: vec![0],
            ranges: String::new(),
            range_count: 0,
        })
    }

    /// Adds the base's next frame and the hashed ranges of its chunk.
    fn push(&mut self, bytes: &[u8], ranges: &[BlockRange]) -> io::Result<()> {
        for r in ranges {
            self.ranges
                .push_str(&format!("{} {} {}\n", r.first, r.last, r.sha256));
        }
        self.range_count += ranges.len();
        self.out.write_all(bytes)?;
        let end = self.offsets.last().copied().unwrap_or(0) + bytes.len() as u64;
        self.offsets.push(end);
        Ok(())
    }

    fn finish(self, dir: &Path) -> io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let index: String = self.offsets.iter().map(|o| format!("{o}\n")).collect();
        std::fs::write(self.temp.path().join(INDEX_FILE), index)?;
        let ranges = format!("{}end {}\n", self.ranges, self.range_count);
        std::fs::write(self.temp.path().join(RANGES_FILE), ranges)?;
        let temp = self.temp.keep();
        if let Err(e) = std::fs::rename(&temp, dir) {
            // Another build finished the same cache first: theirs is as good as ours.
            let _ = std::fs::remove_dir_all(&temp);
            if !dir.join(INDEX_FILE).is_file() {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A writer for a new cache at `dir`, replacing an incomplete or mismatched one (a crash,
/// another chunk count); `None` (with a warning) when the cache folder is not writable, since
/// a build without reuse is still a correct build.
fn start_cache(dir: &Path) -> Option<CacheWriter> {
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
    match CacheWriter::create(dir) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot cache frames; compressing without");
            None
        }
    }
}

/// What one worker produced for one chunk.
struct Done {
    node: Vec<u8>,
    /// The node's ranges in this chunk, hashed.
    ranges: Vec<BlockRange>,
    /// The base's frame when it differs from the node's (only while building the cache).
    base: Option<Vec<u8>>,
    /// The base's ranges when they differ from the node's (only while building the cache).
    base_ranges: Option<Vec<BlockRange>>,
    reused: bool,
    hashes_reused: bool,
}

/// Compresses the node image `src` into `out` like [`super::compress_image`], reusing the
/// cached frames of `base` for chunks the node left as they were, and creating that cache
/// when it is missing. Falls back to plain compression when the base and node differ in size.
pub fn compress_image_reusing(
    src: &Path,
    base: &ReuseBase,
    format: Format,
    out: &mut dyn Write,
) -> Result<CompressStats, OutputError> {
    compress_reusing_to(src, base, format, out, Path::new("<output>"))
}

/// [`compress_image_reusing`] naming `out_path` in write errors.
pub(crate) fn compress_reusing_to(
    src: &Path,
    base: &ReuseBase,
    format: Format,
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<CompressStats, OutputError> {
    let (node, size, node_extents) = open_mapped(src)?;
    let (base_file, base_size, base_extents) = open_mapped(&base.image)?;
    if format == Format::Raw || base_size != size {
        tracing::debug!(
            size,
            base_size,
            "node and base differ in size: no frame reuse"
        );
        let (written, bmap) = compress_image_to(src, format, out, out_path)?;
        return Ok(CompressStats {
            written,
            bmap,
            ..CompressStats::default()
        });
    }
    let source = Source {
        node: Node::File(&node),
        node_extents,
        base: base_file,
        base_extents,
        size,
    };
    compress_source(&source, src, &base.frames, format, out, out_path)
}

/// Opens an image for reading: the file, its size and its data extents.
fn open_mapped(path: &Path) -> Result<(File, u64, Vec<Extent>), OutputError> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    let size = file.metadata().map_err(|e| read_error(path, e))?.len();
    let extents = extents_of(&file).map_err(|e| read_error(path, e))?;
    Ok((file, size, extents))
}

/// Compresses the node image an [`Overlay`] holds, like [`compress_image_reusing`] would the same
/// image as a file, without reading anything to find what changed: chunks the overlay did not
/// write are the base's, so their cached frames and hashes are used as they are, and only
/// written chunks are read (base bytes patched with the written blocks) and compressed.
/// `frames` is the frame cache of the overlay's base ([`frames_dir`]); `format` is a
/// compressed one (a raw node is [`Overlay::materialize`]).
pub fn compress_overlay_to(
    overlay: &Overlay,
    frames: &Path,
    format: Format,
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<CompressStats, OutputError> {
    let (base_file, _, base_extents) = open_mapped(overlay.base_path())?;
    let source = Source {
        node: Node::Overlay(overlay),
        node_extents: overlay.data_extents(&base_extents),
        base: base_file,
        base_extents,
        size: overlay.size(),
    };
    compress_source(&source, overlay.name(), frames, format, out, out_path)
}

/// Where a node's bytes come from.
enum Node<'a> {
    /// A whole image file: compared with the base chunk by chunk.
    File(&'a File),
    /// An overlay over the base: what changed is known.
    Overlay(&'a Overlay),
}

/// A node image and its base, opened, with their data extents.
struct Source<'a> {
    node: Node<'a>,
    node_extents: Vec<Extent>,
    base: File,
    base_extents: Vec<Extent>,
    size: u64,
}

/// The compression pass shared by files and overlays; `src` names the node in read errors.
fn compress_source(
    source: &Source<'_>,
    src: &Path,
    frames: &Path,
    format: Format,
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<CompressStats, OutputError> {
    let size = source.size;
    let all: Vec<Chunk> = chunks(size).collect();
    let cached = CachedFrames::load(frames, all.len());
    let hashes = cached
        .as_ref()
        .and_then(|_| CachedHashes::load(frames, &all));
    let mut writer = match cached {
        Some(_) => None,
        None => start_cache(frames),
    };
    let ctx = Context {
        node: &source.node,
        node_extents: &source.node_extents,
        base: &source.base,
        base_extents: &source.base_extents,
        format,
        cached: cached.as_ref(),
        hashes: hashes.as_ref(),
        building: writer.is_some(),
        zeros: ZeroFrames::new(format),
    };
    let workers = format.workers().max(1);
    let mut stats = CompressStats {
        bmap: Bmap {
            image_size: size,
            ranges: Vec::new(),
        },
        ..CompressStats::default()
    };
    for group in all.chunks(workers * 3) {
        let done = ctx.group(group, workers).map_err(|e| read_error(src, e))?;
        for d in done {
            out.write_all(&d.node)
                .map_err(|e| write_error(out_path, e))?;
            stats.written += d.node.len() as u64;
            if d.reused {
                stats.reused += 1;
            } else {
                stats.compressed += 1;
            }
            stats.hashes_reused += u64::from(d.hashes_reused);
            if let Some(w) = writer.as_mut() {
                let bytes = d.base.as_deref().unwrap_or(&d.node);
                let ranges = d.base_ranges.as_deref().unwrap_or(&d.ranges);
                if let Err(e) = w.push(bytes, ranges) {
                    tracing::warn!(error = %e, "cannot cache frames; compressing without");
                    writer = None;
                }
            }
            stats.bmap.ranges.extend(d.ranges);
        }
    }
    out.flush().map_err(|e| write_error(out_path, e))?;
    if let Some(w) = writer {
        if let Err(e) = w.finish(frames) {
            tracing::warn!(dir = %frames.display(), error = %e, "frame cache not saved");
        }
    }
    tracing::info!(
        reused = stats.reused,
        compressed = stats.compressed,
        "compressed with the base's frames"
    );
    Ok(stats)
}

struct Context<'a> {
    node: &'a Node<'a>,
    node_extents: &'a [Extent],
    base: &'a File,
    base_extents: &'a [Extent],
    format: Format,
    cached: Option<&'a CachedFrames>,
    hashes: Option<&'a CachedHashes>,
    building: bool,
    zeros: ZeroFrames,
}

impl Context<'_> {
    /// One chunk: whether the node changed it (an overlay knows which blocks it wrote; a file
    /// is compared with the base), then reuse the base's frame or compress.
    fn chunk(&self, chunk: Chunk, a: &mut Vec<u8>, b: &mut Vec<u8>) -> io::Result<Done> {
        let node_map = chunk_ranges(self.node_extents, chunk);
        if let Node::Overlay(overlay) = self.node {
            // Unwritten, so the base's: nothing to read when the cache has frame and hashes.
            if !overlay.any_written(chunk.offset, chunk.len) {
                let hashes = self.hashes.and_then(|h| h.of(chunk, &node_map));
                if let (Some(cached), Some(ranges)) = (self.cached, hashes) {
                    return Ok(Done {
                        node: cached.frame(chunk.index)?,
                        ranges,
                        base: None,
                        base_ranges: None,
                        reused: true,
                        hashes_reused: true,
                    });
                }
            }
        }
        let base_hole = read_chunk(self.base, self.base_extents, chunk, b)?;
        let (node_hole, same) = match self.node {
            Node::File(node) => {
                let node_hole = read_chunk(node, self.node_extents, chunk, a)?;
                (node_hole, (node_hole && base_hole) || a == b)
            }
            Node::Overlay(overlay) => {
                a.clear();
                a.extend_from_slice(b);
                if overlay.any_written(chunk.offset, chunk.len) {
                    overlay.patch(chunk.offset, a)?;
                    (false, false)
                } else {
                    (base_hole, true)
                }
            }
        };
        let cached_hashes = if same {
            self.hashes.and_then(|h| h.of(chunk, &node_map))
        } else {
            None
        };
        let hashes_reused = cached_hashes.is_some();
        let ranges = match cached_hashes {
            Some(r) => r,
            None => hash_ranges(chunk, a, &node_map),
        };
        let frame = |hole: bool, data: &[u8]| -> io::Result<Vec<u8>> {
            Ok(if hole {
                self.zeros.frame(chunk)?.bytes
            } else {
                compress_chunk(self.format, chunk, data)?.bytes
            })
        };
        if same {
            if let Some(cached) = self.cached {
                return Ok(Done {
                    node: cached.frame(chunk.index)?,
                    ranges,
                    base: None,
                    base_ranges: None,
                    reused: true,
                    hashes_reused,
                });
            }
        }
        let node = frame(node_hole, a)?;
        let base = (self.building && !same)
            .then(|| frame(base_hole, b))
            .transpose()?;
        let base_ranges = if self.building {
            let base_map = chunk_ranges(self.base_extents, chunk);
            (!same || base_map != node_map).then(|| hash_ranges(chunk, b, &base_map))
        } else {
            None
        };
        Ok(Done {
            node,
            ranges,
            base,
            base_ranges,
            reused: false,
            hashes_reused,
        })
    }

    /// A group of chunks on `workers` threads; results in chunk order.
    fn group(&self, group: &[Chunk], workers: usize) -> io::Result<Vec<Done>> {
        map_in_order(group, workers, |chunk, (a, b): &mut (Vec<u8>, Vec<u8>)| {
            self.chunk(*chunk, a, b)
        })
    }
}
