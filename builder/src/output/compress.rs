//! Compressed output as a run of independent frames over fixed-size chunks of the raw image.
//! zstd frames, xz streams and gzip members each concatenate into a valid file, so chunks
//! compress on every core, the bytes do not depend on thread timing, and a later build can
//! reuse the frame of any chunk that is identical to the base's.

use super::error::{read_error, write_error, OutputError};
use super::pool::map_in_order;
use crate::bmap::{chunk_ranges, hash_ranges, BlockRange, Bmap};
use crate::image::{chunks, extents_of, read_chunk, Chunk, Extent, CHUNK_SIZE};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// zstd level: the one users pick with `zstd -T0` (fast, good ratio).
const ZSTD_LEVEL: i32 = 3;
/// xz preset: xz's default; its 8 MiB dictionary matches the chunk size.
const XZ_PRESET: u32 = 6;
/// gzip level: gzip's default.
const GZIP_LEVEL: u32 = 6;
/// Memory one xz preset-6 encoder needs (liblzma's figure, rounded up); caps xz workers.
const XZ_ENCODER_MEMORY: u64 = 96 << 20;
/// Memory all xz encoders together may use, so peak RSS stays bounded on many-core machines.
const XZ_MEMORY_BUDGET: u64 = 200 << 20;

/// The output encoding of a node image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The raw image (`.img`), sparse.
    Raw,
    /// zstd frames (`.img.zst`).
    Zstd,
    /// xz streams (`.img.xz`).
    Xz,
    /// gzip members (`.img.gz`).
    Gzip,
}

impl Format {
    /// The file name suffix of an image in this format, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "img",
            Format::Zstd => "img.zst",
            Format::Xz => "img.xz",
            Format::Gzip => "img.gz",
        }
    }

    /// The compression level frames of this format are made with (part of the frame cache's
    /// key: another level makes other bytes).
    pub fn level(self) -> u32 {
        match self {
            Format::Raw => 0,
            Format::Zstd => ZSTD_LEVEL as u32,
            Format::Xz => XZ_PRESET,
            Format::Gzip => GZIP_LEVEL,
        }
    }

    /// How many chunks may compress at once: every core, fewer for xz's large encoders.
    pub(super) fn workers(self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        match self {
            Format::Xz => cores.min((XZ_MEMORY_BUDGET / XZ_ENCODER_MEMORY).max(1) as usize),
            _ => cores,
        }
    }
}

/// A chunk compressed on its own: a complete zstd frame, xz stream or gzip member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The chunk of the raw image it decodes to.
    pub chunk: Chunk,
    /// The encoded bytes.
    pub bytes: Vec<u8>,
}

/// Compresses one chunk's bytes into a self-contained frame. Deterministic: fixed levels, no
/// names or timestamps in headers.
pub fn compress_chunk(format: Format, chunk: Chunk, data: &[u8]) -> io::Result<Frame> {
    let bytes = match format {
        Format::Raw => data.to_vec(),
        Format::Zstd => {
            let mut encoder = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
            encoder.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
            encoder.compress(data)?
        }
        Format::Xz => {
            let stream =
                liblzma::stream::Stream::new_easy_encoder(XZ_PRESET, liblzma::stream::Check::Crc64)
                    .map_err(io::Error::other)?;
            let mut encoder = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            encoder.write_all(data)?;
            encoder.finish()?
        }
        Format::Gzip => {
            // GzBuilder writes mtime 0, no name, no comment: the same bytes on every build.
            let mut encoder = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
            encoder.write_all(data)?;
            encoder.finish()?
        }
    };
    Ok(Frame { chunk, bytes })
}

/// Compresses the raw image at `src` into `out` as frames in chunk order, on all cores, with
/// memory bounded by a few chunks per worker. Returns the compressed size.
pub fn compress_image(src: &Path, format: Format, out: &mut dyn Write) -> Result<u64, OutputError> {
    compress_image_to(src, format, out, Path::new("<output>")).map(|(written, _)| written)
}

/// [`compress_image`] naming `out_path` in write errors; also returns the image's block map,
/// hashed from the chunks in memory (no second read of the image).
pub(crate) fn compress_image_to(
    src: &Path,
    format: Format,
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<(u64, Bmap), OutputError> {
    let file = File::open(src).map_err(|e| read_error(src, e))?;
    let size = file.metadata().map_err(|e| read_error(src, e))?.len();
    let extents = extents_of(&file).map_err(|e| read_error(src, e))?;
    let all: Vec<Chunk> = chunks(size).collect();
    let workers = format.workers().max(1);
    let batch = workers * 3;
    let zero_frame = ZeroFrames::new(format);
    let mut written = 0u64;
    let mut bmap = Bmap {
        image_size: size,
        ranges: Vec::new(),
    };
    for group in all.chunks(batch) {
        let frames = compress_group(&file, &extents, format, group, workers, &zero_frame)
            .map_err(|e| read_error(src, e))?;
        for (frame, ranges) in frames {
            out.write_all(&frame.bytes)
                .map_err(|e| write_error(out_path, e))?;
            written += frame.bytes.len() as u64;
            bmap.ranges.extend(ranges);
        }
    }
    out.flush().map_err(|e| write_error(out_path, e))?;
    tracing::debug!(src = %src.display(), ?format, size, written, "compressed");
    Ok((written, bmap))
}

/// Compresses a group of chunks on `workers` threads and hashes their mapped ranges from the
/// same bytes; results come back in chunk order.
fn compress_group(
    file: &File,
    extents: &[Extent],
    format: Format,
    group: &[Chunk],
    workers: usize,
    zeros: &ZeroFrames,
) -> io::Result<Vec<(Frame, Vec<BlockRange>)>> {
    map_in_order(group, workers, |chunk, buf: &mut Vec<u8>| {
        let hole = read_chunk(file, extents, *chunk, buf)?;
        if hole {
            Ok((zeros.frame(*chunk)?, Vec::new()))
        } else {
            let ranges = hash_ranges(*chunk, buf, &chunk_ranges(extents, *chunk));
            Ok((compress_chunk(format, *chunk, buf)?, ranges))
        }
    })
}

/// The frame of an all-zero full-size chunk, computed once: most of a base image is holes.
pub(super) struct ZeroFrames {
    format: Format,
    full: std::sync::OnceLock<Vec<u8>>,
}

impl ZeroFrames {
    pub(super) fn new(format: Format) -> Self {
        ZeroFrames {
            format,
            full: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn frame(&self, chunk: Chunk) -> io::Result<Frame> {
        let zeros = || vec![0u8; chunk.len as usize];
        if chunk.len != CHUNK_SIZE {
            return compress_chunk(self.format, chunk, &zeros());
        }
        if let Some(bytes) = self.full.get() {
            return Ok(Frame {
                chunk,
                bytes: bytes.clone(),
            });
        }
        let frame = compress_chunk(self.format, chunk, &zeros())?;
        let _ = self.full.set(frame.bytes.clone());
        Ok(frame)
    }
}
